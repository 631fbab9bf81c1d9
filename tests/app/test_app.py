"""The Gradio app, launched in-process on the bundled model and driven through gradio_client (no mocks).

Tiny settings throughout (1-2 words, 4 train + 2 held-out snippets of 24 tokens, 1-2 epochs) so the file
runs in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

torch = pytest.importorskip("torch")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.helpers import bundled_runtime, launched_app, wait_for_steps  # noqa: E402
from tokdist_core.api import TokenDistillation  # noqa: E402
from tokdist_core.export import load_rows  # noqa: E402
from tokdist_core.foundations.forward import ATTENTION, cpu_has_fast_bf16  # noqa: E402
from tokdist_core.foundations.models import ModelLoadError  # noqa: E402

DEVICE = os.environ.get("TOKDIST_TEST_DEVICE", "cpu")  # "auto" on a GPU box runs the CUDA path
ENDPOINTS = {"/split", "/contexts", "/distill", "/stop", "/compare", "/trajectory", "/generate", "/lens", "/inspect",
             "/add_snippet", "/retrain_word", "/export"}
TINY_CONTEXTS = ("bundled", [], "", 4, 2, 24, 0)  # source, files, hf name, train, held-out, length, seed


@pytest.fixture(scope="module")
def app(shared_app):
    """(url, runtime, snapshot of the base embedding matrix taken before this module's requests)."""
    url, rt = shared_app
    lm = rt.model()
    before = lm.model.get_input_embeddings().weight.detach().clone()
    vocab_before = len(lm.tokenizer)
    yield url, rt, before, vocab_before


def client(app) -> Client:
    return Client(app[0], verbose=False, download_files=True)


def split(c: Client, words: str, mid: bool = True):
    return c.predict(words, "smollm2-135m", mid, api_name="/split")


def tiny_distill(c: Client, methods=("subword_mean", "tokdist"), epochs: int = 1):
    return c.predict(list(methods), epochs, 0.01, 8, -1, "ntp", 0, api_name="/distill")


def test_every_endpoint_has_a_stable_api_name(app):
    api = client(app).view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) >= ENDPOINTS, api["named_endpoints"].keys()


def test_full_flow_split_contexts_distill_compare_generate_lens_export(app, tmp_path):
    c = client(app)
    rt = app[1]
    lm = rt.model()
    tok = lm.tokenizer

    # Words: pieces and ids are exactly the tokenizer's; single-token and invalid entries are explained.
    view, summary, details, = split(c, "Schopenhauer, Andorra, the")
    assert [w["word"] for w in details["words"]] == [" Schopenhauer", " Andorra"]
    for w in details["words"]:
        ids = tok.encode(w["word"], add_special_tokens=False)
        assert w["ids"] == ids and len(ids) > 1
        assert w["pieces"] == [tok.decode([i]) for i in ids]
        assert "".join(w["pieces"]) == w["word"]
    assert any("already a single token" in s["reason"] for s in details["skipped"])
    assert "td-chip" in view and "Schopenhauer" in summary

    # Contexts: train and held-out snippets per word, with sources, shown in a table.
    view, summary, details = c.predict(*TINY_CONTEXTS, api_name="/contexts")
    for word in (" Schopenhauer", " Andorra"):
        info = details["words"][word]
        assert info["train"] == 4 and info["heldout"] == 2, info
        assert set(info["sources"]) <= {"bundled:lee_background", "bundled:lee", "bundled:enwiki"}
        assert any(word.strip() in text for text in info["examples"])
    assert "<mark>" in view and "held-out" in view

    # Distill: every chosen method finishes and is evaluated.
    methods = ["random", "subword_mean", "tokdist"]
    status, progress, plot, details = tiny_distill(c, methods, epochs=2)
    assert details["finished"] == methods and details["cancelled"] is None and details["evaluated"]
    assert details["steps"]["tokdist"] == 2 and details["device"].startswith(("CPU", "GPU"))
    assert "Done" in status and plot is not None

    # Compare: metrics for every method and word, a best per metric, neighbours and PCA points.
    summary, metrics_html, neighbours_html, pca, losses, details = c.predict(" Schopenhauer", 5, api_name="/compare")
    assert set(details["metrics"]) == set(methods)
    for method in methods:
        for word in (" Schopenhauer", " Andorra"):
            m = details["metrics"][method][word]
            assert all(math.isfinite(m[k]) for k in ("hidden_mse", "hidden_cos", "next_token_kl", "norm_percentile"))
    assert set(details["best"][" Schopenhauer"]) == {"hidden_mse", "hidden_cos", "next_token_kl"}
    assert "★" in metrics_html
    assert set(details["neighbours"]) == set(methods) and all(len(v) == 5 for v in details["neighbours"].values())
    assert {p["kind"] for p in details["pca"]} >= {"new row", "subword"}

    # Generate: original split plus each method, same settings; the word is one token for the methods.
    view, details = c.predict("The philosopher Schopenhauer", [], 5, 0, 0, api_name="/generate")
    gens = {g["method"]: g for g in details["generations"]}
    assert set(gens) == {"original split", *methods}
    assert all(g["text"].startswith("The philosopher Schopenhauer") for g in gens.values())
    assert gens["tokdist"]["prompt_tokens"] == gens["original split"]["prompt_tokens"] - 2  # 3 pieces -> 1 token

    # Lens: one curve per method over every layer (embeddings + 30 blocks).
    snippet_view, plot, table, attention_plot, details = c.predict(" Andorra", 1, api_name="/lens")
    assert set(details["layers"]) == set(methods)
    assert all(len(v) == lm.num_layers + 1 for v in details["layers"].values())
    assert "<mark>" in snippet_view and "td-table" in table and attention_plot is not None
    # Attention to the word, for this snippet and averaged over the 2 held-out ones: per layer, the word's,
    # the prefix's and the later positions' shares are probabilities that add up to one.
    attention = details["attention"]
    assert attention["snippet"]["snippets"] == 1 and attention["average"]["snippets"] == 2
    for report in attention.values():
        assert set(report["shares"]) == {"original pieces", *methods}
        assert report["layers"] == list(range(1, lm.num_layers + 1)) and report["heads"] == 9
        for parts in report["shares"].values():
            for word, prefix, later in zip(parts["word"], parts["prefix"], parts["later"]):
                assert min(word, prefix, later) >= 0 and abs(word + prefix + later - 1) < 1e-4
    assert lm.model.config._attn_implementation == ATTENTION  # the shared model still runs SDPA

    # Export: rows reload onto the base model, and the word then encodes as one token.
    files, model_zip, code, details = c.predict("tokdist", False, api_name="/export")
    assert model_zip is None and details["words"] == [" Schopenhauer", " Andorra"]
    folder = tmp_path / "rows"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / Path(f).name)
    rows = load_rows(folder, lm)
    assert rows.method == "tokdist" and rows.words == [" Schopenhauer", " Andorra"]
    model, tokenizer = TokenDistillation(lm).with_new_tokens(rows)
    ids = tokenizer.encode("He read Schopenhauer today", add_special_tokens=False)
    new_id = tokenizer.convert_tokens_to_ids(" Schopenhauer")
    assert new_id in ids and len(ids) == len(tok.encode("He read Schopenhauer today", add_special_tokens=False)) - 2
    assert torch.equal(model.get_input_embeddings().weight[new_id], rows.input_rows[0])
    # The Lens tab's attention numbers are the library's for the same held-out snippet and exported rows.
    td = TokenDistillation(lm)
    splits, _ = td.prepare_words(["Schopenhauer", "Andorra"])
    again = td.contexts(splits, "bundled", 4, 2, 24, 0)[" Andorra"].heldout[0]
    expected = td.attention(rows, again)["shares"]
    for source in ("original pieces", "tokdist"):
        for part in ("word", "prefix", "later"):
            assert attention["snippet"]["shares"][source][part] == pytest.approx(expected[source][part], abs=1e-5)
    assert "TokenDistillation(model='smollm2-135m')" in code and "method='tokdist'" in code
    compile(code, "snippet", "exec")


def test_export_full_model_zip_loads_with_transformers(app, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    c = client(app)
    # The word-initial form (no leading space, e.g. at the start of a sentence).
    assert split(c, "Andorra", mid=False)[2]["words"][0]["word"] == "Andorra"
    c.predict(*TINY_CONTEXTS, api_name="/contexts")
    tiny_distill(c, ["subword_mean"])
    files, model_zip, code, details = c.predict("subword_mean", True, api_name="/export")  # the formats left out
    assert details["model_zip"] == "tokdist-subword_mean-model.zip" and details["zip_formats"] == ["hf"]
    assert "mid_sentence=False" in code
    with zipfile.ZipFile(model_zip) as z:
        assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= set(z.namelist())
        assert not any(n.startswith("peft/") or n.endswith(".gguf") for n in z.namelist())
        z.extractall(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert len(tokenizer.encode("Andorra is small", add_special_tokens=False)) == 3
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)


def test_export_zip_of_peft_and_gguf_formats(app, tmp_path):
    from gguf import GGUFReader

    from tokdist_core.export.formats import estimate_export_bytes

    c = client(app)
    split(c, "Schopenhauer")
    c.predict(*TINY_CONTEXTS, api_name="/contexts")
    tiny_distill(c, ["subword_mean"])
    files, model_zip, _, details = c.predict("subword_mean", True, ["gguf", "peft"], api_name="/export")
    assert details["zip_formats"] == ["peft", "gguf"] and details["model_zip"] == "tokdist-subword_mean-model.zip"
    with zipfile.ZipFile(model_zip) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "zip")
    assert {"model.gguf", "peft/adapter_config.json", "peft/adapter_model.safetensors", "peft/tokenizer.json",
            "peft/README.md", "new_rows.safetensors", "README.md", "reproduce.py"} <= names
    assert "model.safetensors" not in names  # no hf folder unless ticked
    lm = app[1].model()
    new_id = len(lm.tokenizer)  # the first id after the base vocabulary
    assert json.loads((tmp_path / "zip" / "peft" / "adapter_config.json").read_text())["token_indices"] == [new_id]
    # llama.cpp's vocabulary in the GGUF ends with the new word, at the same id.
    tokens = GGUFReader(tmp_path / "zip" / "model.gguf").fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == new_id + 1 and tokens[-1] == " Schopenhauer"
    # The disk the app reserved for the zip bounds what it wrote.
    rows = load_rows(tmp_path / "zip", lm)
    written = sum(p.stat().st_size for p in (tmp_path / "zip").rglob("*") if p.is_file())
    assert written <= estimate_export_bytes(lm, rows, details["zip_formats"])


def test_two_sessions_are_isolated_and_the_base_model_is_untouched(app):
    url, rt, before, vocab_before = app
    a, b = client(app), client(app)
    split(a, "Schopenhauer")
    split(b, "Andorra")
    a.predict(*TINY_CONTEXTS, api_name="/contexts")
    b.predict(*TINY_CONTEXTS, api_name="/contexts")
    # Both trainings are submitted at once: they share the one GPU queue and still keep their own results.
    job_a = a.submit(["subword_mean", "tokdist"], 1, 0.01, 8, -1, "ntp", 0, api_name="/distill")
    job_b = b.submit(["subword_mean", "tokdist"], 1, 0.01, 8, -1, "ntp", 0, api_name="/distill")
    assert job_a.result(timeout=300)[3]["finished"] == ["subword_mean", "tokdist"]
    assert job_b.result(timeout=300)[3]["finished"] == ["subword_mean", "tokdist"]

    for c, mine, other in ((a, " Schopenhauer", " Andorra"), (b, " Andorra", " Schopenhauer")):
        details = c.predict(None, 3, api_name="/compare")[-1]
        assert details["word"] == mine
        assert all(set(per_word) == {mine} for per_word in details["metrics"].values())
        exported = c.predict("tokdist", False, api_name="/export")[-1]
        assert exported["words"] == [mine]
        with pytest.raises(AppError, match="not one of this session's trained words"):
            c.predict(other, 3, api_name="/compare")

    # A third, fresh session has nothing.
    with pytest.raises(AppError, match="Nothing trained yet"):
        client(app).predict(None, 3, api_name="/compare")

    lm = rt.model()
    assert torch.equal(lm.model.get_input_embeddings().weight, before)  # bit-identical
    assert len(lm.tokenizer) == vocab_before
    assert lm.model.get_input_embeddings().weight.shape[0] == before.shape[0]


def test_stop_keeps_finished_methods_and_the_session_stays_usable(app):
    c = client(app)
    split(c, "Schopenhauer")
    c.predict(*TINY_CONTEXTS, api_name="/contexts")
    # 50 epochs = 50 L-BFGS steps: long enough to stop in the middle.
    job = c.submit(["subword_mean", "tokdist"], 50, 0.01, 1, -1, "ntp", 0, api_name="/distill")
    wait_for_steps(job, "tokdist", 2)
    assert "Stopping" in c.predict(api_name="/stop")
    status, progress, plot, details = job.result(timeout=120)
    assert details["cancelled"] and "tokdist" in details["cancelled"]
    assert details["finished"] == ["subword_mean"]  # the baseline that finished is kept
    assert "Stopped" in status and 2 <= details["steps"]["tokdist"] < 50
    assert c.predict(api_name="/stop") == "Nothing is running for this session right now."

    compare_details = c.predict(None, 3, api_name="/compare")[-1]
    assert set(compare_details["metrics"]) == {"subword_mean"}
    assert tiny_distill(c, ["tokdist"])[3]["finished"] == ["tokdist"]  # a new run works after a stop


def test_bad_inputs_give_visible_messages_and_the_session_stays_usable(app, tmp_path):
    c = client(app)

    def fails(match: str, *args, api_name: str):
        with pytest.raises(AppError, match=match):
            c.predict(*args, api_name=api_name)

    # Every step before its prerequisite says what to do first.
    fails("No words yet", *TINY_CONTEXTS, api_name="/contexts")
    fails("Nothing trained yet", None, 3, api_name="/compare")
    fails("Nothing trained yet", "a prompt", [], 5, 0, 0, api_name="/generate")
    fails("Nothing trained yet", None, 1, api_name="/lens")
    fails("Nothing trained yet", None, False, api_name="/export")

    # Words box: empty, huge, too many, odd Unicode, a model this server does not serve.
    fails("Type at least one word", "", "smollm2-135m", True, api_name="/split")
    fails("Type at least one word", " ,\n, ", "smollm2-135m", True, api_name="/split")
    fails("at most 5,000", "x" * 20_000, "smollm2-135m", True, api_name="/split")
    fails("up to 20 at a time", ", ".join(f"Zorblax{i}" for i in range(25)), "smollm2-135m", True, api_name="/split")
    fails("not in the list of choices|only serves its bundled models", "Andorra", "gpt2", True, api_name="/split")
    view, summary, details = split(c, "\u200bzero, tab\tword, \x00nul, ĠAndorra, " + "w" * 80)
    assert details["words"] == [] and "No usable words" in summary
    reasons = " ".join(s["reason"] for s in details["skipped"])
    assert "invisible" in reasons and "whitespace" in reasons and "limit is 64" in reasons
    assert "whitespace marker" in reasons
    # Markup in a word is shown as text, never interpreted.
    view, summary, details = split(c, "<b>bold</b>, <script>x</script>")
    assert [w["word"] for w in details["words"]] == [" <b>bold</b>", " <script>x</script>"]
    assert "<b>" not in view and "<script>" not in view and "&lt;script&gt;" in view
    # Non-Latin scripts and emoji are fine words if the tokenizer splits them.
    details = split(c, "Krankenwägen, 東京タワー, 🦜🦜")[2]
    assert len(details["words"]) >= 2

    split(c, "Schopenhauer")
    # Contexts: limits, binary or mistyped uploads, missing files, empty dataset name.
    fails(r"Snippet length \(tokens\) must be between 8 and 256, got 5", "bundled", [], "", 4, 2, 5, 0, api_name="/contexts")
    fails("Training snippets per word must be between 1 and 200", "bundled", [], "", 5000, 2, 24, 0,
          api_name="/contexts")
    fails("whole number", "bundled", [], "", 4.5, 2, 24, 0, api_name="/contexts")
    fails("no file was uploaded", "files", [], "", 4, 2, 24, 0, api_name="/contexts")
    fails("Type a Hugging Face dataset name", "hf", [], "  ", 4, 2, 24, 0, api_name="/contexts")
    binary = tmp_path / "notes.txt"
    binary.write_bytes(bytes(range(256)) * 8)
    fails("binary", "files", [handle_file(str(binary))], "", 4, 2, 24, 0, api_name="/contexts")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Schopenhauer war ein Philosoph aus Danzig, ärgerlich.".encode("latin-1"))
    fails("not UTF-8", "files", [handle_file(str(latin1))], "", 4, 2, 24, 0, api_name="/contexts")
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ\x90\x00")
    with pytest.raises(Exception, match=r"(?i)file type|unsupported|invalid"):
        c.predict("files", [handle_file(str(exe))], "", 4, 2, 24, 0, api_name="/contexts")
    big = tmp_path / "big.txt"
    big.write_bytes(b"Schopenhauer wrote. " * (21 * 2**20 // 20 + 1))  # just over the 20 MB limit
    with pytest.raises(Exception, match=r"(?i)20 ?MB|maximum|too large|exceeds"):
        c.predict("files", [handle_file(str(big))], "", 4, 2, 24, 0, api_name="/contexts")
    # A good upload works and is credited in the table.
    text = tmp_path / "mine.txt"
    text.write_text("\n\n".join(f"Paragraph {i}: the writings of Schopenhauer on will and representation "
                                f"shaped many later thinkers, said lecturer number {i}." for i in range(8)),
                    encoding="utf-8")
    view, summary, details = c.predict("files", [handle_file(str(text))], "", 4, 2, 24, 0, api_name="/contexts")
    assert details["words"][" Schopenhauer"]["sources"] == {"file:mine.txt": 6}
    # A dataset name from the page is a hub id, never a server path (the library's path reading is
    # tested in test_corpus.py; test_public_server.py plants a secret and tries every source).
    fails("not a Hugging Face dataset id", "hf", [], str(tmp_path), 4, 2, 24, 0, api_name="/contexts")
    fails("file-format builder", "hf", [], "text", 4, 2, 24, 0, api_name="/contexts")

    # Distill: no method, out-of-range numbers.
    fails("Tick at least one method", [], 1, 0.01, 8, -1, "ntp", 0, api_name="/distill")
    fails("unknown choice.*magic", ["magic"], 1, 0.01, 8, -1, "ntp", 0, api_name="/distill")
    fails(r"Epochs \(passes over the snippets\) must be between 1 and 50", ["tokdist"], 1000, 0.01, 8, -1, "ntp", 0, api_name="/distill")
    fails("Learning rate must be between 0 and 1", ["tokdist"], 1, -1, 8, -1, "ntp", 0, api_name="/distill")
    fails("99 is not in the list of choices", ["tokdist"], 1, 0.01, 8, 99, "ntp", 0, api_name="/distill")
    fails("Output policy|not in the list of choices", ["tokdist"], 1, 0.01, 8, -1, "bogus", 0, api_name="/distill")
    fails("Precision must be one of|not in the list of choices", ["tokdist"], 1, 0.01, 8, -1, "ntp", 0, "fp8",
          api_name="/distill")

    tiny_distill(c, ["subword_mean"])  # the precision argument left out: "auto"
    # Generate / lens / export: empty or huge prompt, odd numbers, unknown names.
    fails("Type a prompt", "   ", [], 5, 0, 0, api_name="/generate")
    fails("limit is 2,000", "Schopenhauer " * 400, [], 5, 0, 0, api_name="/generate")
    fails("New tokens must be between 1 and 100", "Schopenhauer", [], 0, 0, 0, api_name="/generate")
    fails("Not trained in this session", "Schopenhauer", ["tokdist"], 5, 0, 0, api_name="/generate")
    fails("pick a number from 1 to 2", None, 40, api_name="/lens")
    fails("was not trained in this session", "tokdist", False, api_name="/export")
    fails(r"Formats in the zip: unknown choice\(s\) 'rows'", "subword_mean", True, ["rows"], api_name="/export")
    fails("must be true or false", "subword_mean", "yes", ["hf"], api_name="/export")
    view, details = c.predict("Nothing to see here 🦜", [], 3, 0, 0, api_name="/generate")
    assert "none of your words" in view

    # After all of that the session still works end to end, in bf16 where this CPU computes it natively.
    precision = "bf16" if cpu_has_fast_bf16() else "no"
    details = c.predict(["subword_mean", "tokdist"], 1, 0.01, 8, -1, "ntp", 0, precision, api_name="/distill")[3]
    assert details["finished"] == ["subword_mean", "tokdist"] and details["config"]["mixed_precision"] == precision
    assert c.predict(None, 3, api_name="/compare")[-1]["word"] == " Schopenhauer"


def test_allow_any_model_loads_a_local_untied_model(bundled_lm, tmp_path):
    """--allow-any-model: the picker takes a local folder (here a tiny untied Llama on SmolLM2's tokenizer)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tokdist_core.foundations import models

    try:
        folder = models.dequantized_copy(models.BUNDLED_MODELS["smollm2-135m"])
    except ModelLoadError as exc:
        pytest.skip(f"bundled model not installed: {exc}")
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")

    with launched_app(bundled_runtime(bundled_lm, allow_any_model=True)) as url:
        c = Client(url, verbose=False)
        details = c.predict("Andorra", str(tmp_path / "tiny"), True, api_name="/split")[2]
        assert details["model"]["source"].startswith("local:") and not details["model"]["tied_embeddings"]
        c.predict(*TINY_CONTEXTS, api_name="/contexts")
        details = c.predict(["subword_mean", "tokdist"], 1, 0.01, 8, -1, "subword_mean", 0, api_name="/distill")[3]
        assert details["finished"] == ["subword_mean", "tokdist"] and details["evaluated"]
        gens = c.predict("We flew to Andorra", [], 3, 0, 0, api_name="/generate")[1]["generations"]
        assert len(gens) == 3
        # gguf needs a GGUF base: refused with the reason, and the session's rows still export.
        with pytest.raises(AppError, match=r"Cannot export hf \+ gguf: the gguf format .* has none.*bundled models"):
            c.predict("tokdist", True, ["hf", "gguf"], api_name="/export")
        assert c.predict("tokdist", False, api_name="/export")[3]["zip_formats"] == []
        with pytest.raises(AppError, match="Could not load the model"):
            c.predict("Andorra", str(tmp_path / "missing"), True, api_name="/split")
