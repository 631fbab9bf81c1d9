"""L-BFGS on the new rows: each row converges on its own loss, never through the others, and trains a tiny model."""

from __future__ import annotations

import threading

import pytest
import torch

from tests.helpers import subword_init
from tokdist_core.training import DistillationCancelled, DistillationConfig, DistillationTrainer, TeacherCache
from tokdist_core.training.lbfgs import RowLBFGS


def _quadratics(words: int, hidden: int, seed: int):
    """Per row an ill-conditioned quadratic 0.5 (x - c)' A (x - c): (loss and gradient of rows, minimisers)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(words, hidden, hidden, generator=g))
    scales = torch.logspace(-1, 1.5, hidden).expand(words, hidden)  # condition number ~300
    a = q @ torch.diag_embed(scales) @ q.transpose(1, 2)
    centre = torch.randn(words, hidden, generator=g)

    def loss_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = x - centre
        ad = (a @ d[..., None])[..., 0]
        return 0.5 * (d * ad).sum(-1), ad

    return loss_grad, centre


def _run(loss_grad, start: torch.Tensor, steps: int, first_step: float = 0.1) -> RowLBFGS:
    opt = RowLBFGS(start, first_step=first_step)
    for _ in range(steps):
        opt.observe(*loss_grad(opt.trial))
    return opt


def test_rows_converge_to_their_own_minimisers():
    loss_grad, centre = _quadratics(words=3, hidden=16, seed=0)
    start = torch.zeros(3, 16)
    opt = _run(loss_grad, start, steps=60)
    torch.testing.assert_close(opt.rows, centre, atol=1e-3, rtol=1e-3)
    # The accepted loss never rises: the rows handed back are the best each row reached.
    assert (opt.loss <= loss_grad(start)[0]).all()


def test_a_row_moves_the_same_alone_and_beside_others():
    loss_grad, _ = _quadratics(words=3, hidden=16, seed=1)
    start = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    together = _run(loss_grad, start, steps=12)

    def second_only(x: torch.Tensor):
        full = start.clone()
        full[1] = x[0]
        loss, grad = loss_grad(full)
        return loss[1:2], grad[1:2]

    alone = _run(second_only, start[1:2], steps=12)
    torch.testing.assert_close(alone.rows[0], together.rows[1], rtol=1e-5, atol=1e-6)


def test_a_step_that_overshoots_or_gives_nan_is_not_taken():
    loss_grad, centre = _quadratics(words=2, hidden=8, seed=3)

    def nan_far_away(x: torch.Tensor):
        loss, grad = loss_grad(x)
        far = (x - centre).norm(dim=-1) > 50
        return torch.where(far, torch.full_like(loss, float("nan")), loss), grad

    start = torch.zeros(2, 8)
    opt = RowLBFGS(start, first_step=1e4)  # the first trial lands far away: NaN there
    opt.observe(*nan_far_away(opt.trial))
    opt.observe(*nan_far_away(opt.trial))
    assert torch.equal(opt.rows, start)  # rejected: the rows stay put
    assert (opt.step < 1).all()  # and the steps shrink
    for _ in range(80):
        opt.observe(*nan_far_away(opt.trial))
    assert torch.isfinite(opt.rows).all()
    assert (opt.loss < loss_grad(start)[0]).all()


def test_lbfgs_training_lowers_the_loss_and_keeps_words_independent(tiny, two_words):
    splits, snippets = two_words
    words = [s.word for s in splits]
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    config = DistillationConfig(optimizer="lbfgs", epochs=8, learning_rate=5e-2)
    cache = TeacherCache(tiny, snippets, words, -1, with_final=False)
    trainer = DistillationTrainer(tiny, words, config, cache)
    steps = []
    both = trainer.train(subword_init(tiny, splits), callback=steps.append, trajectory_points=3)
    assert len(steps) == trainer.total_steps == 8  # one step an epoch, all of each word's snippets
    assert steps[-1].loss < steps[0].loss
    assert all(later.loss <= earlier.loss for earlier, later in zip(steps, steps[1:]))  # the best reached so far
    assert both.trajectory.shape == (3, 2, tiny.hidden_size) and both.trajectory_steps == [0, 4, 8]
    torch.testing.assert_close(both.trajectory[-1], torch.stack([both.rows[w] for w in words]))
    for key, value in tiny.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # The second word alone: the same row as beside the first.
    alone_cache = TeacherCache(tiny, [s for s in snippets if s.word == words[1]], words[1:], -1, with_final=False)
    alone = DistillationTrainer(tiny, words[1:], config, alone_cache).train(subword_init(tiny, splits[1:]))
    torch.testing.assert_close(alone.rows[words[1]], both.rows[words[1]], rtol=1e-4, atol=1e-5)


def test_lbfgs_stops_between_steps(tiny, two_words):
    splits, snippets = two_words
    words = [s.word for s in splits]
    cache = TeacherCache(tiny, snippets, words, -1, with_final=False)
    trainer = DistillationTrainer(tiny, words, DistillationConfig(optimizer="lbfgs", epochs=10), cache)
    cancel = threading.Event()

    def on_step(record):
        if record.step == 2:
            cancel.set()

    with pytest.raises(DistillationCancelled, match="2 of 10"):
        trainer.train(subword_init(tiny, splits), callback=on_step, cancel=cancel)


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="optimizer must be 'adam' or 'lbfgs'"):
        DistillationConfig(optimizer="sgd").validate()


@pytest.mark.parametrize("losses", [("ntp",), ("hidden_mse", "ntp_auto"), ("logit_kl",)])
def test_lbfgs_lowers_every_loss_on_every_kind_of_model(tiny_any, two_words, losses):
    splits, snippets = two_words
    words = [s.word for s in splits]
    cache = TeacherCache(tiny_any, snippets, words, -1, with_final=True)
    output_rows = None if tiny_any.tied else torch.zeros(len(words), tiny_any.hidden_size)
    config = DistillationConfig(optimizer="lbfgs", epochs=6, learning_rate=5e-2, losses=losses)
    steps = []
    result = DistillationTrainer(tiny_any, words, config, cache, output_rows=output_rows).train(
        subword_init(tiny_any, splits), callback=steps.append)
    assert steps[-1].loss < steps[0].loss
    assert all(torch.isfinite(row).all() for row in result.rows.values())


def test_a_schedule_is_refused_with_lbfgs_and_steps_count_its_passes():
    with pytest.raises(ValueError, match="schedule 'linear' is Adam's"):
        DistillationConfig(optimizer="lbfgs", schedule="linear").validate()
    DistillationConfig(optimizer="adam", schedule="linear").validate()
    assert DistillationConfig(optimizer="lbfgs", epochs=7, batch_size=2).total_steps([5, 3]) == 7
    assert DistillationConfig(optimizer="adam", epochs=7, batch_size=2).total_steps([5, 3]) == 21


def test_adapt_keeps_the_adam_defaults_measured_at_scale_and_the_rest_take_lbfgs():
    from tokdist_core.cli import build_parser

    parser = build_parser()
    adapt = parser.parse_args(["adapt", "--top", "3", "--out", "x"])
    assert (adapt.optimizer, adapt.epochs, adapt.batch_size, adapt.mixed_precision) == ("adam", 24, 4, "native")
    chosen = parser.parse_args(["adapt", "--top", "3", "--out", "x", "--optimizer", "lbfgs", "--epochs", "39",
                                "--mixed-precision", "no"])
    assert (chosen.optimizer, chosen.epochs, chosen.mixed_precision) == ("lbfgs", 39, "no")
    compare = parser.parse_args(["compare", "--words", "Andorra"])
    defaults = DistillationConfig()
    assert (compare.optimizer, compare.epochs, compare.mixed_precision) == (
        defaults.optimizer, defaults.epochs, defaults.mixed_precision) == ("lbfgs", 39, "auto")


def test_the_estimate_counts_lbfgs_first_pass(tiny, two_words):
    from tokdist_core.api import TokenDistillation

    _, snippets = two_words
    td = TokenDistillation(tiny)
    lbfgs = td.estimate_training(snippets, [], ["tokdist"], DistillationConfig(optimizer="lbfgs", epochs=1))
    adam = td.estimate_training(snippets, [], ["tokdist"], DistillationConfig(optimizer="adam", epochs=2,
                                                                               batch_size=1024))
    assert DistillationConfig(optimizer="lbfgs", epochs=1).passes == 2
    assert lbfgs.seconds == pytest.approx(adam.seconds)  # 1 step + the start = 2 passes of all snippets
