"""The prior correction (training.prior): a tied row's rise along the mean final state's direction is taken away."""

from __future__ import annotations

import torch

from tests.helpers import TEXTS, make_tiny, snippets_for
from tokdist_core.foundations.rows import NewTokenRows
from tokdist_core.training.prior import keep_start_prior, mean_final_state, prior_sequences


def test_mean_final_state_is_the_mean_over_every_real_token(tokenizer):
    lm = make_tiny(tokenizer)
    sequences = prior_sequences(tokenizer, ["", "A short one.", *TEXTS, "   "], max_texts=5, max_tokens=12)
    assert len(sequences) == 5 and all(len(ids) <= 12 for ids in sequences)  # blank texts are skipped
    assert sequences[1] == tokenizer.encode(TEXTS[0], add_special_tokens=False)[:12]
    assert len({len(ids) for ids in sequences}) > 1  # padding is exercised
    with torch.no_grad():
        states = [lm.model.get_decoder()(input_ids=torch.tensor([ids])).last_hidden_state[0] for ids in sequences]
    expected = torch.cat(states).mean(0)
    assert torch.allclose(mean_final_state(lm, sequences, batch_size=2), expected, atol=1e-5)


def test_keep_start_prior_takes_away_a_rise_along_the_mean_direction_only(tokenizer):
    torch.manual_seed(0)
    start = NewTokenRows("subword_mean", [" a1", " b2", " c3"], torch.randn(3, 32))
    mean_state = torch.randn(32) * 5
    unit = mean_state / mean_state.norm()
    moved = torch.randn(3, 32)
    moved = moved - (moved @ unit)[:, None] * unit + torch.tensor([2.0, -1.5, 0.0])[:, None] * unit
    trained = NewTokenRows("tokdist", [" c3", " a1"], start.select([" c3", " a1"]).input_rows + moved[[0, 1]],
                           descriptions={" c3": " see three"})
    corrected = keep_start_prior(trained, start, mean_state)
    back = corrected.input_rows - start.select([" c3", " a1"]).input_rows
    assert torch.allclose(back[0] @ unit, torch.tensor(0.0), atol=1e-5)  # a rise of the prior h̄·row is taken away
    assert torch.allclose(back[0], moved[0] - (moved[0] @ unit) * unit, atol=1e-5)  # the rest of that move is kept
    assert torch.allclose(back[1], moved[1], atol=1e-5)  # a move that lowered the prior is kept whole
    assert corrected.words == [" c3", " a1"] and corrected.descriptions == {" c3": " see three"}
    assert trained.input_rows.data_ptr() != corrected.input_rows.data_ptr()  # a new object; the input is kept
    untied = NewTokenRows("tokdist", [" a1"], torch.randn(1, 32), torch.randn(1, 32))
    assert keep_start_prior(untied, start, mean_state) is untied


def test_the_correction_lowers_the_new_rows_share_of_the_next_token_probability(tokenizer):
    """A row pushed along the mean state's direction takes probability everywhere; corrected, it takes what
    its start took."""
    lm = make_tiny(tokenizer)
    snippets = [s for text in TEXTS for s in snippets_for(tokenizer, " Krankenwagen", [text])]
    mean_state = mean_final_state(lm, [s.token_ids for s in snippets])
    head = lm.model.get_output_embeddings().weight.detach()
    start = NewTokenRows("subword_mean", [" Krankenwagen"], head[list(tokenizer.encode(" Krankenwagen"))].mean(0, True))
    pushed = NewTokenRows("tokdist", [" Krankenwagen"], start.input_rows + 3 * mean_state / mean_state.norm())

    def share(row: torch.Tensor) -> float:
        with torch.no_grad():
            states = torch.cat([lm.model.get_decoder()(input_ids=torch.tensor([s.token_ids])).last_hidden_state[0]
                                for s in snippets])
        logits = torch.cat([states @ head.T, states @ row.T], 1)
        return float(torch.softmax(logits, 1)[:, -1].mean())

    corrected = keep_start_prior(pushed, start, mean_state)
    assert share(pushed.input_rows) > 2 * share(start.input_rows)
    assert abs(share(corrected.input_rows) - share(start.input_rows)) < 1e-6
