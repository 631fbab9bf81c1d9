"""The reference's loss, start and schedule variants: definitions, schedule, independence, checks, CLI, app."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from tests.helpers import make_tiny, subword_init, three_words
from tokdist_core.api import TokenDistillation
from tokdist_core.export import reproduce_snippet
from tokdist_core.methods import REGISTRY
from tokdist_core.training import (
    INITS,
    DistillationConfig,
    DistillationTrainer,
    TeacherCache,
    lr_factor,
)


def _definition(lm, snippet, row: torch.Tensor, loss: str) -> torch.Tensor:
    """Per student position from the new token on: the loss by its definition, from plain full forwards."""
    vocab = len(lm.tokenizer)  # the original vocabulary: no padding rows
    student_ids = torch.tensor([list(snippet.prefix) + [0] + list(snippet.suffix)])
    embeds = lm.model.get_input_embeddings()(student_ids)
    embeds[0, snippet.start] = row * getattr(lm.model.get_input_embeddings(), "embed_scale", 1.0)
    # HF's own logits: the LM head and (Gemma) the final softcapping, computed without our code.
    student = lm.model(inputs_embeds=embeds).logits[0, snippet.start :, :vocab].float()
    teacher = lm.model(input_ids=torch.tensor([snippet.token_ids])).logits[0, snippet.start + snippet.n_subwords - 1 :,
                                                                             :vocab].float()
    if loss == "logit_mse":
        return (student - teacher).pow(2).mean(-1)
    p_teacher = teacher.softmax(-1)
    return (p_teacher * (teacher.log_softmax(-1) - student.log_softmax(-1))).sum(-1)


@pytest.mark.parametrize("layer", [-1, 1])
def test_logit_losses_with_the_prefix_cache_equal_their_full_forward_definitions(tiny_any, two_words, layer):
    lm = tiny_any
    splits, snippets = two_words
    words = [s.word for s in splits]
    # Target layer 1: the cache's final states are not its targets, so both are kept and used correctly.
    cache = TeacherCache(lm, snippets, words, layer, with_final=True, batch_size=4)
    init = subword_init(lm, splits)
    config = DistillationConfig(target_layer=layer, losses=("logit_mse", "logit_kl"))
    trainer = DistillationTrainer(lm, words, config, cache, output_rows=None if lm.tied else init)
    with torch.no_grad():
        for loss in ("logit_mse", "logit_kl"):
            expected = [float(_definition(lm, it.snippet, init[it.word_index], loss).mean()) for it in cache.items]
            assert trainer.snippet_losses(init, loss=loss) == pytest.approx(expected, rel=1e-4, abs=1e-6), loss
            assert min(expected) > 1e-4  # the subword mean is not already perfect: a real comparison

        # The training step's per-word loss: each loss a mean over the word's positions in the step, summed.
        definition = {w: {loss: torch.cat([_definition(lm, s, init[w], loss) for s in snippets if s.word == word])
                          for loss in ("logit_mse", "logit_kl")} for w, word in enumerate(words)}
    steps = []
    DistillationTrainer(lm, words, replace(config, optimizer="adam", epochs=1, batch_size=8), cache,
                        output_rows=None if lm.tied else init).train(init, callback=steps.append)
    for w, word in enumerate(words):  # step 1's losses are those of the starting rows
        expected = sum(float(v.mean()) for v in definition[w].values())
        assert steps[0].word_losses[word] == pytest.approx(expected, rel=1e-4)


def test_fixed_and_auto_weighted_next_token_losses_add_up_as_defined(tiny, two_words):
    splits, snippets = two_words
    words = [s.word for s in splits]
    cache = TeacherCache(tiny, snippets, words, -1, with_final=True)
    init = subword_init(tiny, splits)

    def first_step(losses, **fields):
        steps = []
        config = DistillationConfig(optimizer="adam", epochs=1, batch_size=8, losses=losses, **fields)
        DistillationTrainer(tiny, words, config, cache).train(init, callback=steps.append)
        return steps[0].word_losses

    hidden, kl, ntp = first_step(("hidden_mse",)), first_step(("logit_kl",)), first_step(("ntp",))
    weighted = first_step(("hidden_mse", "ntp"), ntp_weight=0.5)
    auto = first_step(("logit_kl", "ntp_auto"))
    for word in words:
        assert weighted[word] == pytest.approx(hidden[word] + 0.5 * ntp[word], rel=1e-5)
        assert auto[word] == pytest.approx(2 * kl[word], rel=1e-5)  # α makes the CE term as big as the KL


@pytest.mark.parametrize("steps,epochs,warmup", [(7, 3, 0.5), (2, 8, 0.5), (1, 4, 0.5), (5, 2, 0.0), (4, 2, 1.0)])
def test_linear_schedule_is_transformers_linear_warmup_then_decay(steps, epochs, warmup):
    from transformers import get_scheduler

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=int(warmup * steps),
                              num_training_steps=epochs * steps)
    theirs = []
    for _ in range(epochs * steps):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    ours = [0.1 * lr_factor("linear", u, epochs * steps, int(warmup * steps)) for u in range(epochs * steps)]
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert [lr_factor("constant", u, epochs * steps, 1) for u in range(epochs * steps)] == [1.0] * (epochs * steps)
    if int(warmup * steps) > 1:
        assert ours[0] == 0 and ours[1] > 0  # warms up from 0 ...
    assert ours[-1] < max(ours) and all(a >= b for a, b in zip(ours[int(warmup * steps):], ours[int(warmup * steps) + 1:]))


@pytest.mark.parametrize("schedule", ["linear", "constant"])
def test_each_word_follows_its_own_schedule_in_a_real_run(tokenizer, schedule):
    lm = make_tiny(tokenizer)
    splits, snippets = three_words(tokenizer)
    words = [s.word for s in splits]
    cache = TeacherCache(lm, snippets, words, -1, with_final=False)
    config = DistillationConfig(optimizer="adam", epochs=3, batch_size=2, learning_rate=0.05, schedule=schedule)
    trainer = DistillationTrainer(lm, words, config, cache)
    seen: dict[int, list[float]] = {}  # word -> the learning rate of each of its Adam updates
    make_optimizer = trainer._optimizer

    def spy(rows):
        optimizer, scheduler = make_optimizer(rows)
        index = {id(r): w for w, r in enumerate(rows)}

        def record(opt, *_):
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        seen.setdefault(index[id(p)], []).append(group["lr"])

        optimizer.register_step_pre_hook(record)
        return optimizer, scheduler

    trainer._optimizer = spy
    trainer.train(subword_init(lm, splits))
    per_epoch = {w: -(-sum(s.word == word for s in snippets) // 2) for w, word in enumerate(words)}
    assert sorted(per_epoch.values()) == [2, 2, 3]  # words take different numbers of steps
    for w, k in per_epoch.items():
        expected = [0.05 * lr_factor(schedule, u, 3 * k, int(0.5 * k)) for u in range(3 * k)]
        assert seen[w] == pytest.approx(expected), (words[w], seen[w])
    if schedule == "linear":
        assert len({tuple(v) for v in seen.values()}) == 2  # two curves: 2 and 3 batches per epoch


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_rows_do_not_depend_on_the_other_words_under_the_variants(tokenizer, kind):
    td = TokenDistillation(make_tiny(tokenizer, kind))
    splits, snippets = three_words(tokenizer)
    base = DistillationConfig(optimizer="adam", epochs=3, batch_size=2, learning_rate=5e-2)
    variants = [replace(base, schedule="linear"), replace(base, losses=("hidden_mse", "logit_kl"), init="random")]
    methods = ["tokdist", "tokdist_antp"]
    constant = td.train(splits, snippets, ["tokdist"], base).rows["tokdist"].input_rows
    for config in variants:
        together = td.train(splits, snippets, methods, config).rows
        assert not torch.allclose(together["tokdist"].input_rows, constant, atol=1e-4)  # the variant changed the run
        for split in splits:
            alone = td.train([split], [s for s in snippets if s.word == split.word], methods, config).rows
            for m in methods:
                torch.testing.assert_close(alone[m].input_rows[0], together[m].input_rows[together[m].index(split.word)],
                                           rtol=1e-4, atol=1e-5, msg=f"{m} {split.word} {config}")


@pytest.mark.parametrize("init", INITS)
def test_init_is_where_the_trained_methods_start(tiny, two_words, init):
    splits, snippets = two_words
    config = DistillationConfig(optimizer="adam", epochs=1, learning_rate=1e-9, init=init)  # Adam moves a row by about lr per step
    rows = TokenDistillation(tiny).train(splits, snippets, [init, "tokdist", "ntp"], config).rows
    for method in ("tokdist", "ntp"):
        torch.testing.assert_close(rows[method].input_rows, rows[init].input_rows, rtol=0, atol=1e-7)
    others = [m for m in INITS if m != init]
    baseline = TokenDistillation(tiny).train(splits, snippets, others, config).rows
    for other in others:  # the starts really differ, so the check above tells them apart
        assert (baseline[other].input_rows - rows[init].input_rows).abs().max() > 1e-3


@pytest.mark.parametrize("fields, message", [
    ({"losses": ("distill",)}, r"'distill' is now called 'hidden_mse'.*\('hidden_mse',\)"),
    ({"losses": ("distill", "ntp")}, r"\('distill', 'ntp'\) was αNTP, now written \('hidden_mse', 'ntp_auto'\)"),
    ({"losses": ("ntp", "ntp_auto", "hidden_mse")}, "'ntp' .* or 'ntp_auto' .* not both"),
    ({"losses": ("ntp_auto",)}, "'ntp_auto' .* needs one of .*hidden_mse"),
    ({"losses": "hidden_mse"}, "tuple of names such as \\('hidden_mse',\\)"),
    ({"losses": ("mse",)}, "non-empty subset of \\('hidden_mse', 'logit_mse', 'logit_kl', 'ntp', 'ntp_auto'\\)"),
    ({"init": "zeros"}, "init must be 'subword_mean', 'subword_weighted', 'random' or 'vocab_mean'"),
    ({"schedule": "cosine"}, "schedule must be 'constant' or 'linear'"),
    ({"warmup": 1.5}, r"warmup must be a finite number in \[0, 1\]"),
    ({"ntp_weight": 0.0}, r"ntp_weight must be a finite number in \(0, 100\]"),
])
def test_bad_variants_are_refused_with_what_to_do(tiny, fields, message, monkeypatch):
    with pytest.raises(ValueError, match=message):
        DistillationConfig(**fields).validate()
    td = TokenDistillation(tiny)
    monkeypatch.setattr(td, "contexts", lambda *a, **k: pytest.fail("work started before the config was checked"))
    with pytest.raises(ValueError, match=message):
        td.compare(["Krankenwagen"], methods=["tokdist"], training=DistillationConfig(**fields))


def test_methods_say_which_losses_they_train_with_under_a_config():
    config = DistillationConfig(losses=("logit_kl", "ntp"), ntp_weight=0.5)
    assert REGISTRY["tokdist"].losses_for(config) == ("logit_kl", "ntp")
    assert REGISTRY["tokdist_antp"].losses_for(config) == ("logit_kl", "ntp_auto")
    assert REGISTRY["tokdist_antp"].losses_for(DistillationConfig(losses=("ntp",))) == ("hidden_mse", "ntp_auto")
    assert REGISTRY["ntp"].losses_for(config) == ("ntp",)
    assert REGISTRY["subword_mean"].losses_for(config) == () and not REGISTRY["subword_mean"].trains
    default = DistillationConfig()
    assert not REGISTRY["tokdist"].needs_lm_head(default) and REGISTRY["tokdist"].needs_lm_head(config)
    assert REGISTRY["tokdist_antp"].needs_lm_head(default) and REGISTRY["ntp"].needs_lm_head(default)


def test_estimate_counts_the_lm_head_of_the_logit_losses(tiny, two_words):
    _, snippets = two_words
    td = TokenDistillation(tiny)
    hidden = td.estimate_training(snippets, [], ["tokdist"], DistillationConfig())
    logits = td.estimate_training(snippets, [], ["tokdist"], DistillationConfig(losses=("hidden_mse", "logit_kl")))
    assert logits.flops > hidden.flops and logits.memory_bytes > hidden.memory_bytes  # head + final states


def test_reproduce_script_writes_the_variant(tmp_path):
    config = DistillationConfig(losses=("hidden_mse", "logit_kl"), init="random", schedule="linear", warmup=0.25,
                                ntp_weight=0.5)
    from_json = json.loads(json.dumps(config.to_dict()))  # a report's config: the tuple is a list there
    for source in (config.to_dict(), from_json):
        code = reproduce_snippet("smollm2-135m", [" Krankenwagen"], "tokdist", source)
        call = code[code.index("DistillationConfig(") : code.index("),\n", code.index("DistillationConfig(")) + 1]
        rebuilt = eval(call, {"DistillationConfig": DistillationConfig})  # noqa: S307  (our own generated code)
        assert rebuilt == config


# -- the command line and the app on the bundled model ------------------------------------------------


@pytest.mark.parametrize("flag, expected", [
    ("distill", "'distill' is now called 'hidden_mse'"),
    ("ntp,ntp_auto", "not both"),
    ("hidden_mse,magic", "non-empty subset of"),
])
def test_cli_refuses_bad_losses_before_loading_anything(flag, expected):
    from tests.helpers import cli_probe, error_line

    line = error_line(cli_probe("compare", "--words", "Andorra", "--losses", flag))
    assert "--losses" in line and expected in line, line


