"""Training replay: the rows recorded at every step, and their path on Compare's PCA map (tiny models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import TEXTS, make_tiny, snippets_for
from tokdist_core import Trajectory
from tokdist_core.api import TokenDistillation
from tokdist_core.foundations.vocab import check_new_word
from tokdist_core.training import DistillationConfig, recorded_steps

CONFIG = DistillationConfig(optimizer="adam", epochs=2, batch_size=2, learning_rate=5e-2)
MORE = [  # a third word with 5 snippets: more steps per epoch than the others (3 snippets each)
    "The Zugspitze is the highest peak of the Wetterstein range, and the Zugspitze draws many climbers.",
    "From the Zugspitze you can see four countries on a clear day in early autumn.",
    "A cable car climbs the Zugspitze from the Eibsee lake below it in ten minutes.",
    "In winter the Zugspitze glacier is a ski area with lifts and a small restaurant.",
    "Weather on the Zugspitze changes fast, so hikers carry warm clothes all year round.",
]


def test_recorded_steps_keep_the_start_and_the_end_evenly_spaced():
    assert recorded_steps(5, 101) == [0, 1, 2, 3, 4, 5]  # every step when they fit
    assert recorded_steps(0, 2) == [0]
    capped = recorded_steps(1000, 11)
    assert capped == list(range(0, 1001, 100))
    odd = recorded_steps(7, 4)
    assert odd[0] == 0 and odd[-1] == 7 and len(odd) == 4 and odd == sorted(set(odd))
    for bad in (1, 0, -3, 2.5, True, "10"):
        with pytest.raises(ValueError, match="trajectory_points must be an integer of at least 2"):
            recorded_steps(10, bad)


@pytest.mark.parametrize("kind", ["tied", "untied", "gemma"])
def test_the_trajectory_starts_at_the_subword_mean_and_ends_at_the_final_rows(tokenizer, two_words, kind):
    td = TokenDistillation(make_tiny(tokenizer, kind))
    splits, snippets = two_words
    words = [s.word for s in splits]
    methods = ["subword_mean", "tokdist", "ntp", "tokdist_antp"]
    outcome = td.train(splits, snippets, methods, CONFIG, record_trajectory=True)
    total = td.training_steps(snippets, CONFIG)
    assert total == 4  # 2 epochs x ceil(3 snippets / batch 2)
    assert set(outcome.trajectories) == {"tokdist", "ntp", "tokdist_antp"}  # baselines do not train: no path
    start = outcome.rows["subword_mean"].input_rows
    for method, trajectory in outcome.trajectories.items():
        assert isinstance(trajectory, Trajectory) and trajectory.method == method and trajectory.words == words
        assert trajectory.steps == list(range(total + 1)) == [0] + [r.step for r in outcome.histories[method]]
        assert trajectory.rows.shape == (total + 1, len(words), td.lm.hidden_size)
        assert trajectory.rows.dtype == torch.float32 and trajectory.rows.device.type == "cpu"
        assert torch.equal(trajectory.rows[0], start), method  # step 0: the init, the subword mean
        assert torch.equal(trajectory.rows[-1], outcome.rows[method].input_rows), method  # the final rows
        moved = (trajectory.rows[1:] - trajectory.rows[:-1]).norm(dim=-1)
        assert (moved > 0).all(), f"{method}: every step moves every word's row here"
        assert torch.equal(trajectory.of(words[1]), trajectory.rows[:, 1])


def test_recording_does_not_change_the_rows_and_each_point_is_the_row_after_that_step(tokenizer, two_words):
    td = TokenDistillation(make_tiny(tokenizer, "tied"))
    splits, snippets = two_words
    recorded = td.train(splits, snippets, ["tokdist", "ntp"], CONFIG, record_trajectory=True)
    plain = td.train(splits, snippets, ["tokdist", "ntp"], CONFIG)
    assert plain.trajectories == {}  # off by default
    for method in ("tokdist", "ntp"):
        assert torch.equal(recorded.rows[method].input_rows, plain.rows[method].input_rows), method
    # The point after epoch 1 of a 2-epoch run is the final row of a 1-epoch run (same batches, same Adam).
    one_epoch = td.train(splits, snippets, ["tokdist"], DistillationConfig(optimizer="adam", epochs=1, batch_size=2,
                                                                            learning_rate=5e-2))
    per_epoch = td.training_steps(snippets, DistillationConfig(optimizer="adam", epochs=1, batch_size=2))
    trajectory = recorded.trajectories["tokdist"]
    torch.testing.assert_close(trajectory.rows[trajectory.steps.index(per_epoch)],
                               one_epoch.rows["tokdist"].input_rows, rtol=1e-5, atol=1e-6)


def test_a_long_run_keeps_evenly_spaced_points_and_always_the_final_rows(tokenizer, two_words):
    td = TokenDistillation(make_tiny(tokenizer, "tied"))
    splits, snippets = two_words
    config = DistillationConfig(optimizer="adam", epochs=3, batch_size=1, learning_rate=5e-2)  # 9 steps
    outcome = td.train(splits, snippets, ["tokdist"], config, record_trajectory=True, trajectory_points=4)
    trajectory = outcome.trajectories["tokdist"]
    assert trajectory.steps == [0, 3, 6, 9]
    assert trajectory.rows.shape[0] == 4
    assert torch.equal(trajectory.rows[-1], outcome.rows["tokdist"].input_rows)
    with pytest.raises(ValueError, match="trajectory_points must be an integer of at least 2"):
        td.train(splits, snippets, ["tokdist"], config, record_trajectory=True, trajectory_points=1)


def test_a_words_path_does_not_depend_on_the_words_beside_it(tokenizer):
    """Beside a word with more snippets, a word waits (its row stays put) at the steps it has no batch for;
    without those pauses its path is the one it takes alone."""
    td = TokenDistillation(make_tiny(tokenizer, "tied"))
    words = [" Krankenwagen", " Zugspitze"]
    splits = [check_new_word(tokenizer, w) for w in words]
    snippets = [s for w in words for s in snippets_for(tokenizer, w, TEXTS + MORE)]
    together = td.train(splits, snippets, ["tokdist"], CONFIG, record_trajectory=True).trajectories["tokdist"]
    for split in splits:
        alone_run = td.train([split], [s for s in snippets if s.word == split.word], ["tokdist"], CONFIG,
                             record_trajectory=True)
        alone = alone_run.trajectories["tokdist"].of(split.word)
        path = together.of(split.word)
        keep = [0] + [k for k in range(1, len(path)) if not torch.equal(path[k], path[k - 1])]
        torch.testing.assert_close(path[keep], alone, rtol=1e-4, atol=1e-5, msg=split.word)
    assert len(together.steps) == 7  # 2 epochs x ceil(5 / 2) steps, plus the start
    assert len(alone_run.trajectories["tokdist"].steps) == 7 and len(keep) == 7
    pauses = td.train([splits[0]], [s for s in snippets if s.word == words[0]], ["tokdist"], CONFIG,
                      record_trajectory=True).trajectories["tokdist"]
    assert len(pauses.steps) == 5  # Krankenwagen alone: 2 x ceil(3 / 2) steps, plus the start


def test_the_trajectory_map_is_compares_map_with_each_path_projected_onto_it(tokenizer, two_words):
    td = TokenDistillation(make_tiny(tokenizer, "tied"))
    splits, snippets = two_words
    outcome = td.train(splits, snippets, ["random", "subword_mean", "tokdist", "ntp"], CONFIG,
                       record_trajectory=True)
    rows = list(outcome.rows.values())
    word = splits[0].word
    replay = td.trajectory_map(rows, outcome.trajectories, word)
    compare_points = td.embedding_map(rows, word)
    assert replay["word"] == word and replay["points"] == compare_points  # exactly Compare's map
    star = {p["label"]: (p["x"], p["y"]) for p in compare_points if p["kind"] == "new row"}
    scale = max(abs(v) for p in compare_points for v in (p["x"], p["y"]))
    assert set(replay["paths"]) == {"tokdist", "ntp"}
    for method, path in replay["paths"].items():
        steps = outcome.trajectories[method].steps
        assert path["steps"] == steps and len(path["x"]) == len(path["y"]) == len(steps)
        # The last point sits on the method's star; the first on the subword mean's star.
        np.testing.assert_allclose([path["x"][-1], path["y"][-1]], star[method], rtol=1e-5, atol=1e-6 * scale)
        np.testing.assert_allclose([path["x"][0], path["y"][0]], star["subword_mean"], rtol=1e-5,
                                   atol=1e-6 * scale)
        assert path["distance_from_start"][0] == 0.0
        final_move = float((outcome.rows[method].input_rows[0] - outcome.rows["subword_mean"].input_rows[0]).norm())
        assert path["distance_from_start"][-1] == pytest.approx(final_move, rel=1e-5)
        assert path["path_length"] >= path["distance_from_start"][-1] - 1e-6 > 0
        # Not the same point repeated: the path moves on the map.
        assert len({(round(x, 6), round(y, 6)) for x, y in zip(path["x"], path["y"])}) == len(steps)
    # A sequence of trajectories works like the mapping.
    assert td.trajectory_map(rows, [outcome.trajectories["ntp"]], word)["paths"].keys() == {"ntp"}


def test_the_trajectory_map_refuses_what_it_cannot_draw(tokenizer, two_words):
    td = TokenDistillation(make_tiny(tokenizer, "tied"))
    splits, snippets = two_words
    baseline = td.train(splits, snippets, ["subword_mean"], CONFIG, record_trajectory=True)
    assert baseline.trajectories == {}
    rows = list(baseline.rows.values())
    with pytest.raises(ValueError, match="no training trajectories"):
        td.trajectory_map(rows, baseline.trajectories, splits[0].word)
    trained = td.train(splits, snippets, ["tokdist"], CONFIG, record_trajectory=True)
    with pytest.raises(ValueError, match="has no new row in"):
        td.trajectory_map(list(trained.rows.values()), trained.trajectories, " Zugspitze")
    with pytest.raises(ValueError, match="has no final rows among"):
        td.trajectory_map(rows, trained.trajectories, splits[0].word)  # tokdist's path, subword_mean's rows
    with pytest.raises(ValueError, match="rows of shape"):
        Trajectory("tokdist", ["a", "b"], [0, 1, 2], torch.zeros(3, 1, 4))
