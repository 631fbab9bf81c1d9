"""Distillation on tiny in-process models: alignment, losses, cache reuse, frozen weights, cancel."""

from __future__ import annotations

import math
import threading
from dataclasses import replace

import pytest
import torch

from tests.helpers import make_tiny, reference_mse, subword_init
from tokdist_core.api import TokenDistillation
from tokdist_core.foundations.forward import (
    autocast_for,
    cpu_has_fast_bf16,
    decoder_forward,
    embed_ids,
    output_logits,
)
from tokdist_core.foundations.snippet import Snippet
from tokdist_core.training import (
    DistillationCancelled,
    DistillationConfig,
    DistillationTrainer,
    TeacherCache,
    fit_output_rows,
)
from tokdist_core.training.batching import length_groups, student_batch


@pytest.mark.parametrize("layer", [-1, 1])
def test_cached_student_loss_equals_full_forward(tiny_any, two_words, layer):
    lm = tiny_any
    splits, snippets = two_words
    words = [s.word for s in splits]
    cache = TeacherCache(lm, snippets, words, layer, with_final=False, batch_size=4)
    init = subword_init(lm, splits)
    trainer = DistillationTrainer(lm, words, DistillationConfig(target_layer=layer), cache)
    hf_layer = layer if layer >= 0 else lm.num_layers
    expected = [reference_mse(lm, item.snippet, init[item.word_index], hf_layer) for item in cache.items]
    assert trainer.snippet_losses(init) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # Alone, a short-prefix row is cropped out of its teacher block's longer prefix slots.
    assert any(item.snippet.start < item.kv.keys.shape[-2] for item in cache.items)
    for i in range(len(cache.items)):
        assert trainer.snippet_losses(init, [i]) == pytest.approx([expected[i]], rel=1e-4, abs=1e-6)


def test_alignment_pairs_new_token_with_last_subword(tiny, two_words):
    splits, snippets = two_words
    cache = TeacherCache(tiny, snippets, [s.word for s in splits], -1, with_final=False)
    for item in cache.items:
        s = item.snippet
        # targets: the teacher's last subword position and every position after it, nothing before
        assert item.targets.shape[0] == len(s.suffix) + 1 == s.student_length() - s.start
        keys, values = item.prefix_kv()
        assert keys.shape[:3] == values.shape[:3] == (tiny.num_layers, 2, s.start)  # prefix key/values only
        full = tiny.model(input_ids=torch.tensor([s.token_ids]), output_hidden_states=True).hidden_states[-1][0]
        torch.testing.assert_close(item.targets, full[s.start + s.n_subwords - 1 :], rtol=1e-4, atol=1e-5)


def test_pad_equal_to_eos_inside_snippet_is_still_trained(tiny, tokenizer):
    # pad == eos for SmolLM2; an eos id inside the text must count as a real position.
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    word = " Krankenwagen"
    from tokdist_core.foundations.vocab import check_new_word

    split = check_new_word(tokenizer, word)
    eos = tokenizer.eos_token_id
    ids = (11, 22, 33) + split.ids + (eos, 44, eos)
    snippet = Snippet(word, ids, 3, len(split.ids), "test")
    cache = TeacherCache(tiny, [snippet], [word], -1, with_final=False)
    batch = student_batch(tiny, cache.items, need_targets=True)
    assert int(batch.valid.sum()) == 4  # new token + three suffix tokens, two of them equal to pad


@pytest.mark.parametrize("losses", [("hidden_mse",), ("ntp",), ("hidden_mse", "ntp_auto"), ("logit_kl",),
                                    ("logit_mse", "ntp")])
def test_training_lowers_loss_and_leaves_model_bit_identical(tiny_any, two_words, losses):
    lm = tiny_any
    splits, snippets = two_words
    words = [s.word for s in splits]
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    cache = TeacherCache(lm, snippets, words, -1, with_final=losses != ("hidden_mse",))
    config = DistillationConfig(optimizer="adam", epochs=15, batch_size=4, learning_rate=5e-2, losses=losses)
    output_rows = None if lm.tied else torch.zeros(len(words), lm.hidden_size)
    trainer = DistillationTrainer(lm, words, config, cache, output_rows=output_rows)
    steps = []
    result = trainer.train(subword_init(lm, splits), callback=steps.append)
    assert len(steps) == steps[0].total_steps == 15  # 3 snippets per word, 4 per word per step
    assert set(steps[-1].word_losses) == set(words)
    assert steps[-1].loss < steps[0].loss
    assert all(math.isfinite(s.loss) for s in steps)
    assert set(result.rows) == set(words)
    for key, value in lm.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_length_split_batches_give_the_same_rows(tiny, two_words, monkeypatch):
    from tokdist_core.training import batching

    splits, snippets = two_words
    words = [s.word for s in splits]
    cache = TeacherCache(tiny, snippets, words, -1, with_final=False)
    config = DistillationConfig(optimizer="adam", epochs=3, batch_size=6, learning_rate=5e-2)

    def train(threshold):
        monkeypatch.setitem(batching.SPLIT_MIN_SAVED_TOKENS, "cpu", threshold)
        trainer = DistillationTrainer(tiny, words, config, cache)
        steps = []
        result = trainer.train(subword_init(tiny, splits), callback=steps.append)
        return result, steps

    whole, whole_steps = train(10**9)
    assert length_groups(cache.items, list(range(6)), "cpu") == [list(range(6))]
    split, split_steps = train(1)
    assert len(length_groups(cache.items, list(range(6)), "cpu")) > 1  # widths differ, so the batch is split
    assert split.tokens_seen == whole.tokens_seen
    for a, b in zip(whole_steps, split_steps):
        assert a.loss == pytest.approx(b.loss, rel=1e-5)
        assert a.word_losses == pytest.approx(b.word_losses, rel=1e-5)
    for word in words:
        torch.testing.assert_close(split.rows[word], whole.rows[word], rtol=1e-5, atol=1e-6)


def test_cancel_stops_between_steps(tiny, two_words):
    splits, snippets = two_words
    words = [s.word for s in splits]
    cache = TeacherCache(tiny, snippets, words, -1, with_final=False)
    trainer = DistillationTrainer(tiny, words, DistillationConfig(optimizer="adam", epochs=50, batch_size=2), cache)
    cancel = threading.Event()
    seen = []

    def on_step(record):
        seen.append(record.step)
        if record.step == 3:
            cancel.set()

    with pytest.raises(DistillationCancelled, match="3 of 100"):
        trainer.train(subword_init(tiny, splits), callback=on_step, cancel=cancel)
    assert seen == [1, 2, 3]


@pytest.mark.parametrize(
    "field,value",
    [("learning_rate", 0.0), ("learning_rate", -1.0), ("learning_rate", float("nan")), ("learning_rate", float("inf")),
     ("epochs", 0), ("batch_size", 0), ("epochs", 2.5), ("losses", ()), ("losses", ("mse",)),
     ("mixed_precision", "fp8"), ("target_layer", 3), ("target_layer", -4)],
)
def test_bad_hyperparameters_are_rejected(tiny, field, value):
    config = DistillationConfig(**{field: value})
    with pytest.raises(ValueError, match=field.split("_")[0]):
        config.validate(tiny)


def test_config_fields_carry_help_and_the_bounds_validate_uses(tiny):
    import dataclasses

    import tokdist_core
    from tokdist_core.training import config_fields

    specs = {spec.name: spec for spec in config_fields()}
    assert list(specs) == [f.name for f in dataclasses.fields(DistillationConfig)]
    assert tokdist_core.config_fields is config_fields  # the package root serves ui and cli
    defaults = DistillationConfig()
    for spec in specs.values():
        assert isinstance(spec.help, str) and len(spec.help) > 10, spec.name
        assert spec.default == getattr(defaults, spec.name)
        spec.check(spec.default)
    assert specs["epochs"].type is int and (specs["epochs"].min, specs["epochs"].max) == (1, 1000)
    assert (specs["batch_size"].min, specs["batch_size"].max) == (1, 1024)
    lr = specs["learning_rate"]
    assert lr.type is float and (lr.min, lr.max, lr.min_exclusive) == (0, 10, True)
    assert specs["losses"].multiple
    assert specs["losses"].choices == ("hidden_mse", "logit_mse", "logit_kl", "ntp", "ntp_auto")
    assert specs["mixed_precision"].choices == ("auto", "native", "bf16", "no") and not specs["mixed_precision"].multiple

    def rejected(name, value):
        with pytest.raises(ValueError, match=name) as validated:
            DistillationConfig(**{name: value}).validate(tiny)
        with pytest.raises(ValueError) as checked:
            specs[name].check(value)
        assert str(checked.value) == str(validated.value)  # one message, wherever it is checked
        return str(validated.value)

    # validate() accepts exactly what the metadata allows, at every bound of every bounded field.
    for spec in specs.values():
        if spec.max is None:
            continue
        step = 1 if spec.type is int else 1e-6
        DistillationConfig(**{spec.name: spec.type(spec.max)}).validate(tiny)
        assert str(spec.max) in rejected(spec.name, spec.type(spec.max + step))
        if spec.min_exclusive:
            rejected(spec.name, spec.type(spec.min))
            DistillationConfig(**{spec.name: spec.type(spec.min + step)}).validate(tiny)
        else:
            DistillationConfig(**{spec.name: spec.type(spec.min)}).validate(tiny)
            rejected(spec.name, spec.type(spec.min - step))
    assert rejected("epochs", 1001) == "epochs must be an integer between 1 and 1000, got 1001"
    assert rejected("learning_rate", 0) == "learning_rate must be a finite number in (0, 10], got 0"
    assert rejected("mixed_precision", "fp8") == "mixed_precision must be 'auto', 'native', 'bf16' or 'no', got 'fp8'"
    assert rejected("losses", ()) == ("losses must be a non-empty subset of ('hidden_mse', 'logit_mse', 'logit_kl', "
                                      "'ntp', 'ntp_auto'), got ()")
    assert rejected("seed", True) == "seed must be an integer, got True"
    assert rejected("target_layer", 1.5) == "target_layer must be an integer, got 1.5"
    for losses in (("hidden_mse",), ("ntp",), ("ntp_auto", "hidden_mse"), ("logit_kl", "logit_mse", "ntp")):
        DistillationConfig(losses=losses).validate(tiny)


def test_output_policy_enum_and_the_new_output_rows(tokenizer, tiny, two_words):
    import tokdist_core
    from tokdist_core.training import (
        OUTPUT_POLICIES,
        OutputPolicy,
        new_output_rows,
        subword_mean_output_rows,
    )

    assert OUTPUT_POLICIES == tuple(p.value for p in OutputPolicy) == ("ntp", "zero", "subword_mean")
    assert tokdist_core.OUTPUT_POLICIES is OUTPUT_POLICIES
    assert OutputPolicy.parse("zero") is OutputPolicy.ZERO is OutputPolicy.parse(OutputPolicy.ZERO)
    assert OutputPolicy.NTP == "ntp" and str(OutputPolicy.SUBWORD_MEAN) == "subword_mean"
    for bad in ("bogus", None, 3, ["ntp"]):
        with pytest.raises(ValueError, match=r"output policy must be one of \('ntp', 'zero', 'subword_mean'\)"):
            OutputPolicy.parse(bad)

    splits, snippets = two_words
    config = DistillationConfig()
    assert new_output_rows(tiny, splits, snippets, "zero", config) is None  # tied: the input rows serve
    lm = make_tiny(tokenizer, "untied")
    mean = subword_mean_output_rows(lm, splits)
    head = lm.model.get_output_embeddings().weight
    torch.testing.assert_close(mean[0], head[list(splits[0].ids)].float().mean(0))
    assert torch.equal(new_output_rows(lm, splits, snippets, OutputPolicy.ZERO, config), torch.zeros_like(mean))
    for policy in ("subword_mean", OutputPolicy.SUBWORD_MEAN):
        assert torch.equal(new_output_rows(lm, splits, snippets, policy, config), mean)
    assert torch.equal(new_output_rows(lm, splits, [], "ntp", config), mean)  # nothing to fit on
    fitted = new_output_rows(lm, splits, snippets, "ntp", config)
    assert fitted.shape == mean.shape and not torch.allclose(fitted, mean)
    td = TokenDistillation(lm)
    torch.testing.assert_close(td.output_rows(splits, snippets, OutputPolicy.NTP, config), fitted)
    rows = td.train(splits, snippets, ["subword_mean"], output_policy=OutputPolicy.ZERO).rows["subword_mean"]
    assert torch.equal(rows.output_rows, torch.zeros_like(mean))
    with pytest.raises(ValueError, match="output policy must be one of"):
        td.train(splits, snippets, ["subword_mean"], output_policy="bogus")


def test_output_rows_fit_raises_new_token_probability(tokenizer, two_words):
    lm = make_tiny(tokenizer, "untied")
    splits, snippets = two_words
    words = [s.word for s in splits]
    cache = TeacherCache(lm, snippets, words, -1, with_final=True)
    init = torch.zeros(len(words), lm.hidden_size)
    fitted = fit_output_rows(lm, cache, init, steps=100, learning_rate=5e-2)
    vocab = lm.model.get_output_embeddings().weight.shape[0]

    def mean_logprob(rows):
        vals = []
        for item in cache.items:
            logits = output_logits(lm.model, item.prefix_final[-1:], rows)
            vals.append(float(logits.log_softmax(-1)[0, vocab + item.word_index]))
        return sum(vals) / len(vals)

    assert mean_logprob(fitted) > mean_logprob(init) + 1.0


def test_decoder_forward_stops_early(tiny):
    ids = torch.tensor([[5, 6, 7, 8]])
    mask = torch.ones_like(ids)
    h1, final = decoder_forward(tiny.model, embed_ids(tiny.model, ids), mask, 1)
    ref = tiny.model(input_ids=ids, output_hidden_states=True).hidden_states
    assert final is None
    torch.testing.assert_close(h1, ref[1])
    h1b, final_b = decoder_forward(tiny.model, embed_ids(tiny.model, ids), mask, 1, run_to_end=True)
    torch.testing.assert_close(h1b, ref[1])
    torch.testing.assert_close(final_b, ref[-1])


def test_evaluator_and_trainer_agree_on_hidden_mse(tiny_any, two_words):
    # Two independent code paths (cached student vs. full forward in evaluate) must give the same number.
    from tokdist_core.evaluation.metrics import heldout_metrics
    from tokdist_core.foundations.rows import NewTokenRows

    lm = tiny_any
    splits, snippets = two_words
    words = [s.word for s in splits]
    snippet = snippets[0]
    cache = TeacherCache(lm, [snippet], words, -1, with_final=False)
    init = subword_init(lm, splits)
    trainer = DistillationTrainer(lm, words, DistillationConfig(), cache)
    [loss] = trainer.snippet_losses(init)
    report = heldout_metrics(lm, [NewTokenRows("subword_mean", words, init)], [snippet])
    assert report["subword_mean"][snippet.word]["hidden_mse"] == pytest.approx(float(loss), rel=1e-4)


def test_native_grouped_query_attention_gives_the_same_loss(tiny_any, two_words, monkeypatch):
    # load_model turns on SDPA's own key/value grouping on CPU-only machines; it must not change numbers.
    lm = tiny_any
    splits, snippets = two_words
    words = [s.word for s in splits]
    cache = TeacherCache(lm, snippets, words, -1, with_final=False)
    trainer = DistillationTrainer(lm, words, DistillationConfig(), cache)
    init = subword_init(lm, splits)
    losses = []
    for flag in ("0", "1"):
        monkeypatch.setenv("TRANSFORMERS_SDPA_FORCE_GQA", flag)
        losses.append(torch.tensor(trainer.snippet_losses(init)))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)


def test_precision_setting_picks_the_autocast_dtype(monkeypatch):
    from tokdist_core.foundations import forward
    from tokdist_core.foundations.forward import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype(cpu, "auto") is None and autocast_dtype(cpu, "no") is None
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert autocast_dtype(cuda, "auto") is torch.bfloat16 and autocast_dtype(cuda, "no") is None
    assert autocast_dtype(cuda, "native") is torch.bfloat16
    # "native": bf16 on a CPU only where it has bf16 matmul kernels, fp32 where bf16 would be emulated
    for fast, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(forward, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert autocast_dtype(cpu, "native") is expected
    with pytest.raises(ValueError, match="mixed_precision"):
        autocast_dtype(cpu, "fp16")


@pytest.mark.skipif(not cpu_has_fast_bf16(), reason="this CPU runs bf16 matmuls emulated")
@pytest.mark.parametrize("kind", ["tied", "gemma"])
def test_bf16_on_cpu_computes_in_bf16_and_trains_fp32_rows(tokenizer, two_words, kind):
    lm = make_tiny(tokenizer, kind)
    splits, snippets = two_words
    words = [s.word for s in splits]
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    # lr 2e-2: Gemma scales its input rows by sqrt(hidden), so 5e-2 overshoots on the tiny Gemma in fp32 as well
    config = DistillationConfig(optimizer="adam", epochs=15, batch_size=4, learning_rate=2e-2, mixed_precision="bf16")
    cache = TeacherCache(lm, snippets, words, -1, with_final=False, mixed_precision="bf16")
    assert cache.items[0].kv.values.dtype == torch.bfloat16  # the teacher really ran in bf16
    assert cache.items[0].targets.dtype == torch.float32
    trainer = DistillationTrainer(lm, words, config, cache)
    init = subword_init(lm, splits)
    for item, got in zip(cache.items, trainer.snippet_losses(init)):  # under the config's bf16 autocast
        with torch.no_grad():
            expected = reference_mse(lm, item.snippet, init[item.word_index], lm.num_layers)
        assert got == pytest.approx(expected, rel=0.1, abs=1e-3)
    steps = []
    result = trainer.train(init, callback=steps.append)
    assert steps[-1].loss < 0.7 * steps[0].loss
    assert all(row.dtype == torch.float32 and torch.isfinite(row).all() for row in result.rows.values())
    for key, value in lm.model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("kind", ["tied", "gemma"])
def test_attention_runs_in_fp32_under_cpu_bf16_autocast(tokenizer, kind, monkeypatch):
    # The CPU's bf16 flash-attention backward is ~10x slower than fp32's: under CPU autocast the models' attention
    # (forward.ATTENTION) runs SDPA in fp32 with autocast off, and hands bf16 back to the bf16 matmuls after it.
    from tokdist_core.foundations import forward

    lm = make_tiny(tokenizer, kind)
    assert lm.model.config._attn_implementation == forward.ATTENTION
    seen = []
    real = forward.sdpa_attention_forward

    def spy(module, query, key, value, mask, **kwargs):
        seen.append({query.dtype, key.dtype, value.dtype, torch.is_autocast_enabled("cpu")})
        out, weights = real(module, query, key, value, mask, **kwargs)
        seen[-1].add(out.dtype)
        return out, weights

    monkeypatch.setattr(forward, "sdpa_attention_forward", spy)
    ids = torch.tensor([[5, 9, 14, 3, 8, 21], [7, 7, 30, 2, 0, 0]])
    mask = (torch.arange(6)[None] < torch.tensor([[6], [4]])).long()
    embeds = embed_ids(lm.model, ids).requires_grad_(True)
    with forward.autocast_for(lm.device, "bf16"):
        hidden, _ = decoder_forward(lm.model, embeds, mask, -1)
    assert len(seen) == lm.num_layers and all(s == {torch.float32, False} for s in seen)
    hidden.float().pow(2).sum().backward()  # gradients flow through the fp32 attention to the inputs
    assert embeds.grad is not None and torch.isfinite(embeds.grad).all() and embeds.grad.abs().sum() > 0
    seen.clear()
    with torch.no_grad():
        exact, _ = decoder_forward(lm.model, embeds, mask, -1)  # no autocast: SDPA exactly as transformers runs it
    assert all(s == {torch.float32, False} for s in seen)
    valid = mask.bool()
    torch.testing.assert_close(hidden.float()[valid], exact[valid], rtol=0.05, atol=0.05)


@pytest.mark.parametrize("kind", ["tied", "gemma"])
def test_cpu_bf16_passes_run_on_a_shared_bf16_twin_of_the_weights(tokenizer, two_words, kind):
    # Autocast recasts every frozen fp32 weight at every op; on a CPU the bf16 passes run on one bf16 copy instead.
    lm = make_tiny(tokenizer, kind)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    assert lm.compute_model("no") is lm.model and lm.compute_model("auto") is lm.model  # fp32 on a CPU
    twin = lm.compute_model("bf16")
    assert twin is not lm.model and lm.compute_model("bf16") is twin  # built once, shared by every request
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in twin.parameters())
    assert (twin.get_output_embeddings().weight is twin.get_input_embeddings().weight) == lm.tied
    ids = torch.tensor([[5, 9, 14, 3, 8, 21], [7, 7, 30, 2, 0, 0]])
    mask = (torch.arange(6)[None] < torch.tensor([[6], [4]])).long()
    with torch.no_grad(), autocast_for(lm.device, "bf16"):
        over_fp32, _ = decoder_forward(lm.model, embed_ids(lm.model, ids), mask, -1)
        on_twin, _ = decoder_forward(twin, embed_ids(twin, ids), mask, -1)
    valid = mask.bool()
    torch.testing.assert_close(on_twin.float()[valid], over_fp32.float()[valid], rtol=0.05, atol=0.05)
    # The teacher and the trainer compute on the twin; the base model never runs and never changes.
    calls = {"base": 0, "twin": 0}
    hooks = [m.get_decoder().register_forward_pre_hook(lambda *_, k=k: calls.__setitem__(k, calls[k] + 1))
             for k, m in (("base", lm.model), ("twin", twin))]
    try:
        splits, snippets = two_words
        words = [s.word for s in splits]
        config = DistillationConfig(epochs=2, mixed_precision="bf16")
        cache = TeacherCache(lm, snippets, words, -1, with_final=False, mixed_precision="bf16")
        trainer = DistillationTrainer(lm, words, config, cache)
        result = trainer.train(subword_init(lm, splits))
    finally:
        for hook in hooks:
            hook.remove()
    assert calls["base"] == 0 and calls["twin"] >= 1 + config.passes
    assert all(row.dtype == torch.float32 and torch.isfinite(row).all() for row in result.rows.values())
    for key, value in lm.model.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, before[key]), key


def test_bf16_is_refused_on_a_cpu_that_would_emulate_it(tiny, monkeypatch):
    from tokdist_core.foundations import forward

    monkeypatch.setattr(forward, "cpu_has_fast_bf16", lambda: False)  # validate() looks it up there
    with pytest.raises(ValueError, match="emulated and slower than fp32"):
        DistillationConfig(mixed_precision="bf16").validate(tiny)
    DistillationConfig(mixed_precision="no").validate(tiny)


def test_cancel_stops_the_teacher_and_the_evaluation(tiny, two_words):
    from tokdist_core.evaluation.metrics import heldout_metrics
    from tokdist_core.foundations.cancel import Cancelled

    splits, snippets = two_words
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(DistillationCancelled, match="preparing the teacher"):
        TeacherCache(tiny, snippets, [s.word for s in splits], -1, with_final=False, cancel=cancel)
    rows = TokenDistillation(tiny).train(splits, snippets, ["subword_mean"]).rows["subword_mean"]
    with pytest.raises(Cancelled, match="evaluating"):
        heldout_metrics(tiny, [rows], snippets, cancel=cancel)
    # The facade's train keeps finished methods and says where it stopped.
    cancel_later = threading.Event()
    outcome = TokenDistillation(tiny).train(
        splits, snippets, ["subword_mean", "tokdist"], DistillationConfig(optimizer="adam", epochs=50, batch_size=2),
        callback=lambda record: cancel_later.set() if record.step == 2 else None, cancel=cancel_later,
        heldout=snippets)
    assert list(outcome.rows) == ["subword_mean"] and "tokdist: stopped after 2 of" in outcome.cancelled
    assert outcome.metrics is None  # a stopped run is not evaluated here


def test_train_outcome_reports_rows_histories_times_tokens_and_metrics(tiny, two_words):
    splits, snippets = two_words
    config = DistillationConfig(optimizer="adam", epochs=2, batch_size=2)
    outcome = TokenDistillation(tiny).train(splits, snippets, ["subword_mean", "tokdist"], config, heldout=snippets)
    assert list(outcome.rows) == ["subword_mean", "tokdist"] and outcome.cancelled is None
    assert len(outcome.histories["tokdist"]) == 2 * 2 and outcome.histories["subword_mean"] == []
    student_positions = sum(min(len(s.suffix), config.tokens_after) + 1 for s in snippets)
    assert outcome.tokens_seen == {"subword_mean": 0, "tokdist": 2 * student_positions}
    assert 0 < outcome.teacher_seconds <= outcome.seconds["tokdist"]
    assert set(outcome.metrics) == {"subword_mean", "tokdist"}
    assert set(outcome.metrics["tokdist"]) == {s.word for s in splits}


def test_training_reads_each_snippet_up_to_tokens_after_the_word(tiny, two_words):
    splits, snippets = two_words
    td = TokenDistillation(tiny)
    cut = DistillationConfig(optimizer="adam", epochs=2, batch_size=2, tokens_after=2)
    whole = replace(cut, tokens_after=0)
    by_hand = [s.cut_after(2) for s in snippets]
    assert any(len(s.suffix) > 2 for s in snippets)  # the cut shortens some snippets here
    for s, c in zip(snippets, by_hand):
        assert c.token_ids == s.token_ids[: s.start + s.n_subwords + 2] and (c.start, c.word_ids) == (s.start, s.word_ids)
    short = by_hand[0]
    assert short.cut_after(2) is short and short.cut_after(50) is short
    with pytest.raises(ValueError, match="tokens must be >= 0"):
        short.cut_after(-1)
    assert cut.trained_part(snippets) == by_hand and whole.trained_part(snippets) == snippets

    # Training cuts the snippets itself (teacher included): the same rows as training on snippets cut by hand.
    trained = td.train(splits, snippets, ["tokdist"], cut)
    assert trained.tokens_seen["tokdist"] == 2 * sum(len(s.suffix) + 1 for s in by_hand)
    rows = trained.rows["tokdist"].input_rows
    assert torch.equal(rows, td.train(splits, by_hand, ["tokdist"], whole).rows["tokdist"].input_rows)
    assert not torch.equal(rows, td.train(splits, snippets, ["tokdist"], whole).rows["tokdist"].input_rows)
    # Estimates count what training reads.
    estimated = td.estimate_training(snippets, [], ["tokdist"], cut)
    assert estimated.flops == td.estimate_training(by_hand, [], ["tokdist"], whole).flops
    assert estimated.flops < td.estimate_training(snippets, [], ["tokdist"], whole).flops


def test_estimates_grow_with_the_work_and_learn_from_finished_jobs(tiny, two_words):
    from tokdist_core import estimate

    splits, snippets = two_words
    td = TokenDistillation(tiny)
    one = td.estimate_training(snippets, snippets, ["tokdist"], DistillationConfig(epochs=1))
    eight = td.estimate_training(snippets, snippets, ["tokdist"], DistillationConfig(epochs=8))
    both = td.estimate_training(snippets, snippets, ["tokdist", "ntp"], DistillationConfig(epochs=8))
    assert 0 < one.seconds < eight.seconds < both.seconds and eight.flops > one.flops
    assert eight.memory_bytes == one.memory_bytes > 0  # the teacher cache does not grow with epochs
    assert td.estimate_training(snippets, snippets, ["subword_mean"]).memory_bytes == 0  # nothing trains
    td.record_job_time(eight, 10 * eight.seconds / estimate.machine_speed(tiny).correction + 1.0)
    assert td.estimate_training(snippets, snippets, ["tokdist"], DistillationConfig(epochs=8)).seconds > eight.seconds
    assert estimate.format_seconds(0.2) == "1 s" and estimate.format_seconds(300) == "5 min"


def test_training_is_repeatable_to_the_last_bit(tokenizer, two_words):
    """Student batches gather their rows in the teacher blocks' own order, never by memory address: the same
    snippets give the same batches, so the same run twice gives the same rows bit for bit."""
    lm = make_tiny(tokenizer, "tied")
    splits, snippets = two_words
    words = [s.word for s in splits]
    results = []
    for _ in range(2):
        cache = TeacherCache(lm, snippets, words, -1, with_final=False, batch_size=2)  # 3 teacher blocks
        trainer = DistillationTrainer(lm, words, DistillationConfig(optimizer="adam", epochs=3, batch_size=4), cache)
        results.append(trainer.train(subword_init(lm, splits)).rows)
    assert all(torch.equal(results[0][w], results[1][w]) for w in words)
    assert len({it.kv.block for it in cache.items}) == 3
    batch = student_batch(lm, list(reversed(cache.items)), need_targets=True)
    assert [(it.kv.block, it.row) for it in batch.items] == sorted((it.kv.block, it.row) for it in cache.items)
