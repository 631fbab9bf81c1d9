"""Recording the new rows while they train (opt-in): the Replay view's path of each row through training."""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_TRAJECTORY_POINTS = 101  # the start plus up to 100 evenly spaced steps (the last one always among them)


def check_trajectory_points(max_points: object) -> None:
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
        raise ValueError(f"trajectory_points must be an integer of at least 2 (the start and the end), "
                         f"got {max_points!r}")


def recorded_steps(total_steps: int, max_points: int) -> list[int]:
    """The optimizer steps to record: every one of 0..total_steps when they fit in `max_points`, else
    `max_points` evenly spaced ones that always include 0 (the start) and `total_steps` (the final rows)."""
    check_trajectory_points(max_points)
    if total_steps + 1 <= max_points:
        return list(range(total_steps + 1))
    return sorted({round(i * total_steps / (max_points - 1)) for i in range(max_points)})


class RowRecorder:
    """Copies of every word's row at the chosen steps.

    The copies go into one buffer preallocated on the rows' device (no host sync inside a step) and come
    to the CPU once, at the end. Memory: points x words x hidden x 4 bytes (SmolLM2, 101 points: 233 KB
    per word), which is why recording is opt-in and the points are capped.
    """

    def __init__(self, rows: Sequence[torch.Tensor], total_steps: int, max_points: int) -> None:
        self.steps = recorded_steps(total_steps, max_points)
        self._slot = {step: k for k, step in enumerate(self.steps)}
        first = rows[0]
        self._buffer = torch.empty(len(self.steps), len(rows), first.shape[-1], device=first.device,
                                   dtype=torch.float32)
        self._filled: set[int] = set()
        self.record(0, rows)

    @torch.no_grad()
    def record(self, step: int, rows: Sequence[torch.Tensor]) -> None:
        """Keep the rows as they are after `step` optimizer steps, if that step is one to record."""
        slot = self._slot.get(step)
        if slot is not None:
            self._buffer[slot].copy_(torch.stack([r.detach() for r in rows]))
            self._filled.add(slot)

    def result(self) -> tuple[torch.Tensor, list[int]]:
        """([points, words, hidden] cpu float32, the step of each point)."""
        if len(self._filled) != len(self.steps):  # a bug, not a user error: the loop ran other steps
            missing = [s for k, s in enumerate(self.steps) if k not in self._filled]
            raise RuntimeError(f"trajectory: steps {missing[:5]} were never reached")
        return self._buffer.cpu(), list(self.steps)
