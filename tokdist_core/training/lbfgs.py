"""L-BFGS for many independent rows at once: each row keeps its own curvature pairs, direction and step.

A new token's row is a one-vector problem of a few hundred dimensions on a smooth loss: quasi-Newton steps on
all of a word's snippets reach in tens of passes what Adam's small steps reach in hundreds (docs/method.md,
"Fewer, better steps"). Rows never share anything: a row's path depends only on its own losses and
gradients, so a word's row is the same whichever words are evaluated beside it (as with the Adam loop).

Each `observe()` takes every row's loss and gradient at its current trial point and moves each row on by
itself: an accepted trial (Armijo's sufficient decrease) becomes the row and adds a curvature pair; a
rejected one shrinks that row's step (quadratic interpolation, kept within [0.1, 0.5] of the step); after
`MAX_BACKTRACKS` rejections in a row the row forgets its pairs and goes on along its gradient.
"""

from __future__ import annotations

import torch

HISTORY = 10  # curvature pairs per row (torch.optim.LBFGS's default is 100; 10 is the textbook choice)
ARMIJO = 1e-4  # sufficient-decrease constant
MAX_BACKTRACKS = 8
_CURVATURE_EPS = 1e-10  # a pair whose s.y is not clearly positive would break the inverse-Hessian estimate


class RowLBFGS:
    """Batched L-BFGS over rows [words, hidden] (fp32, on the rows' device).

    The first step of a row (and every restart) moves it by `first_step` along its largest gradient
    coordinate, as Adam's first step moves each coordinate by its learning rate.
    """

    def __init__(self, start: torch.Tensor, first_step: float, history: int = HISTORY) -> None:
        if start.dim() != 2:
            raise ValueError(f"rows must be [words, hidden], got {tuple(start.shape)}")
        self.first_step = float(first_step)
        words, hidden = start.shape
        self.rows = start.detach().float().clone()  # the accepted rows: the best point each row has reached
        self.trial = self.rows.clone()  # where the next evaluation happens
        new = self.rows.new_zeros
        self.loss = torch.full((words,), float("inf"), device=start.device)
        self.grad = new(words, hidden)
        self.direction = new(words, hidden)
        self.step = new(words)
        self.backtracks = torch.zeros(words, dtype=torch.long, device=start.device)
        # Pairs, oldest first; a slot with rho 0 holds no pair and drops out of the two-loop recursion.
        self.s, self.y, self.rho = new(words, history, hidden), new(words, history, hidden), new(words, history)
        self.evaluations = 0

    @torch.no_grad()
    def observe(self, loss: torch.Tensor, grad: torch.Tensor) -> None:
        """Every row's loss [words] and gradient [words, hidden] at `trial`; sets the next `trial`."""
        loss, grad = loss.detach().float(), grad.detach().float()
        if self.evaluations == 0:
            accept = torch.ones_like(self.backtracks, dtype=torch.bool)
        else:
            slope = (self.grad * self.direction).sum(-1)  # < 0 along a descent direction
            accept = torch.isfinite(loss) & (loss <= self.loss + ARMIJO * self.step * slope)
        self.evaluations += 1
        if self.evaluations > 1 and accept.any():
            self._add_pairs(accept, self.trial - self.rows, grad - self.grad)
        self.rows[accept] = self.trial[accept]
        self.loss[accept] = loss[accept]
        self.grad[accept] = grad[accept]
        self.backtracks[accept] = 0
        reject = ~accept
        if reject.any():
            self._shrink(reject, loss)
        if accept.any():
            self.direction[accept] = self._directions(accept)
            self.step[accept] = 1.0
        self.trial = self.rows + self.step[:, None] * self.direction

    def _add_pairs(self, accept: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> None:
        sy = (s * y).sum(-1)
        keep = accept & (sy > _CURVATURE_EPS * (s.norm(dim=-1) * y.norm(dim=-1)).clamp(min=1e-30))
        if not keep.any():
            return
        for buffer, new in ((self.s, s), (self.y, y)):
            buffer[keep] = torch.cat([buffer[keep, 1:], new[keep, None]], dim=1)
        self.rho[keep] = torch.cat([self.rho[keep, 1:], (1.0 / sy[keep])[:, None]], dim=1)

    def _directions(self, which: torch.Tensor) -> torch.Tensor:
        """-H g for the chosen rows by the two-loop recursion over each row's own pairs."""
        g, s, y, rho = self.grad[which], self.s[which], self.y[which], self.rho[which]
        q = g.clone()
        alpha = torch.zeros_like(rho)
        for k in range(rho.shape[1] - 1, -1, -1):  # newest to oldest
            alpha[:, k] = rho[:, k] * (s[:, k] * q).sum(-1)
            q -= alpha[:, k, None] * y[:, k]
        has_pairs = rho[:, -1] > 0
        newest_y = y[:, -1]
        gamma = (1.0 / rho[:, -1].clamp(min=1e-30)) / (newest_y * newest_y).sum(-1).clamp(min=1e-30)
        # No pairs yet: a gradient step of `first_step` along the largest coordinate.
        first = self.first_step / g.abs().amax(-1).clamp(min=1e-30)
        r = q * torch.where(has_pairs, gamma, first)[:, None]
        for k in range(rho.shape[1]):  # oldest to newest
            beta = rho[:, k] * (y[:, k] * r).sum(-1)
            r += s[:, k] * (alpha[:, k] - beta)[:, None]
        return -r

    def _shrink(self, reject: torch.Tensor, loss: torch.Tensor) -> None:
        """Backtrack the rejected rows; restart from a gradient step the ones that backtracked too often."""
        step = self.step[reject]
        slope = (self.grad[reject] * self.direction[reject]).sum(-1)
        excess = loss[reject] - self.loss[reject] - slope * step
        # The minimum of the quadratic through f(0), f'(0) and f(step); a non-finite loss halves the step.
        fitted = -slope * step * step / (2 * excess.clamp(min=1e-30))
        fitted = torch.where(torch.isfinite(fitted), fitted, 0.5 * step)
        self.step[reject] = torch.minimum(torch.maximum(fitted, 0.1 * step), 0.5 * step)
        self.backtracks[reject] += 1
        restart = reject & (self.backtracks > MAX_BACKTRACKS)
        if restart.any():
            self.rho[restart] = 0.0
            self.backtracks[restart] = 0
            self.direction[restart] = self._directions(restart)  # a gradient step; the shrunk step stays
