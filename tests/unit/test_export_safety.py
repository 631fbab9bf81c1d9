"""Export safety (issue 8, item 5): atomic files, one copy per export, start-up clean-up, the disk cap.

Real components throughout: a tiny in-process model over the real tokenizer, the real save/zip code, the real
`ui.tabs.export.run_export` over the core's `ExportStore`, a real Gradio server for the copy count and a real
SIGKILL of a subprocess mid-export.
Everything lives under a per-test GRADIO_TEMP_DIR, so nothing outside tmp_path is touched.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import gradio as gr
import pytest
import torch

from tests.helpers import REPO, make_tiny
from tokdist_core.export import (
    META_FILE,
    ROWS_FILE,
    estimate_model_bytes,
    export_model_zip,
    load_rows,
    save_model,
    save_rows,
)
from tokdist_core.export.formats import estimate_export_bytes
from tokdist_core.export.store import (
    EXPORT_MAX_AGE_S,
    EXPORT_MIN_KEEP_S,
    LOCK_FILE,
    MARKER,
    ExportSpaceError,
    ExportStore,
    current_owner,
)
from tokdist_core.foundations.files import EXPORT_MARKER, atomic_folder, atomic_path
from tokdist_core.foundations.rows import NewTokenRows
from ui.runtime import Runtime
from ui.state import SessionState
from ui.tabs import export as export_tab

WORD = " Krankenwagen"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private Gradio cache folder (and legacy export folder); returns the export root inside it."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setattr(export_tab, "LEGACY_ROOT", tmp_path / "legacy-tokdist-exports")
    return export_tab.export_store().root


def tiny_runtime(tokenizer, max_export_bytes: int = 2 * 1024**3) -> Runtime:
    rt = Runtime(default_model="tiny", device="cpu", max_export_bytes=max_export_bytes)
    rt._models["tiny"] = make_tiny(tokenizer, "tied")  # served from the runtime's cache, like a loaded model
    return rt


def tiny_state(rt: Runtime) -> SessionState:
    lm = rt.model("tiny")
    rows = NewTokenRows("subword_mean", [WORD], torch.randn(1, lm.hidden_size, generator=torch.Generator().manual_seed(0)))
    return SessionState(model_name="tiny", rows={"subword_mean": rows}, train_config={"epochs": 1, "seed": 0})


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def hidden(path: Path, root: Path) -> bool:
    """A temporary: some component of its path inside the export root starts with a dot."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def age(folder: Path, seconds: float) -> None:
    """Make an export look `seconds` older (the marker's own clock, as the clean-up reads it)."""
    marker = json.loads((folder / MARKER).read_text())
    for key in ("created", "finished"):
        if key in marker:
            marker[key] -= seconds
    (folder / MARKER).write_text(json.dumps(marker))


# --- the core: atomic files ---------------------------------------------------------------------------------

def test_atomic_path_renames_on_success_and_leaves_nothing_on_error(tmp_path):
    with atomic_path(tmp_path / "a.bin") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".a.bin.") and tmp.name.endswith(".partial")
        tmp.write_bytes(b"x" * 10)
        assert not (tmp_path / "a.bin").exists()  # nothing under the final name until done
    assert (tmp_path / "a.bin").read_bytes() == b"x" * 10
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_atomic_folder_replaces_an_export_whole_and_keeps_it_on_error(tmp_path):
    final = tmp_path / "out"
    for name in ("a.txt", "b.txt"):  # a first export, then one that replaces it
        with atomic_folder(final) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".out.") and tmp.name.endswith(".partial")
            (tmp / EXPORT_MARKER).write_text(name)
            (tmp / name).write_text(name)
    assert sorted(p.name for p in final.iterdir()) == sorted([EXPORT_MARKER, "b.txt"])  # a.txt went with the old one
    with pytest.raises(KeyboardInterrupt), atomic_folder(final) as tmp:  # Ctrl-C halfway through a third
        (tmp / "c.txt").write_text("half")
        raise KeyboardInterrupt
    assert sorted(p.name for p in final.iterdir()) == sorted([EXPORT_MARKER, "b.txt"])
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no hidden partial or old folder left
    # A folder of other files is never replaced (a replace would delete them), nor a file.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    (tmp_path / "file").write_text("x")
    for target, message in ((tmp_path / "mine", "not an earlier export"), (tmp_path / "file", "existing file")):
        with pytest.raises(ValueError, match=message), atomic_folder(target):
            pass
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep" and (tmp_path / "file").read_text() == "x"


def test_an_interrupted_save_over_an_earlier_export_leaves_the_earlier_one_whole(tokenizer, tmp_path, monkeypatch):
    import transformers

    from tokdist_core.api import TokenDistillation

    td = TokenDistillation(make_tiny(tokenizer))
    first = td.train(td.prepare_words(["Krankenwagen"])[0], [], ["subword_mean"]).rows["subword_mean"]
    out = td.save(first, tmp_path / "out")
    others = td.train(td.prepare_words(["Schadenfreude", "Zugspitze", "Aberdeen"])[0], [],
                      ["subword_mean"]).rows["subword_mean"]

    def interrupted(self, *args, **kwargs):  # Ctrl-C after the model shards, before the tokenizer
        raise KeyboardInterrupt

    monkeypatch.setattr(transformers.PreTrainedTokenizerBase, "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        td.save(others, out)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert load_rows(out).words == [" Krankenwagen"]
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    saved_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) + 1 == len(saved_tokenizer)
    new_id = saved_tokenizer.convert_tokens_to_ids(" Krankenwagen")
    assert torch.equal(model.get_input_embeddings().weight[new_id].detach(), first.input_rows[0].to(torch.float32))


def test_every_saved_folder_has_a_model_card_that_keeps_words_literal(tokenizer, tmp_path):
    from huggingface_hub import ModelCard

    from tokdist_core.api import TokenDistillation

    td = TokenDistillation(make_tiny(tokenizer))
    hostile = "{{7*7}}|<b>x</b>`y"  # template syntax, a table pipe, markup and a backtick: all kept literal
    rows = td.train(td.prepare_words(["Krankenwagen", hostile])[0], [], ["subword_mean"]).rows["subword_mean"]
    report = {"documents": 3, "tokens_original": 120, "tokens_adapted": 110, "tokens_saved_pct": 8.333,
              "original": {"bits_per_byte": 1.25}, "methods": {"subword_mean": {"bits_per_byte": 1.3,
                                                                                 "bits_per_byte_change_pct": 4.0}}}
    out = td.save(rows, tmp_path / "out", card={"settings": {"epochs": 8}, "report": report,
                                               "command": "tokdist distill --words Krankenwagen"})
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and card.data.tags[:2] == ["tokdist", "token-distillation"]
    assert "base_model" not in card.data.to_dict()  # a test model has no Hub id: nothing is made up
    text = card.text
    assert "' {{7*7}}&#124;&lt;b&gt;x&lt;/b&gt;`y'" in text and "49" not in text
    assert "| <code>subword_mean</code> | 1.3000 | +4.00 % |" in text and "8.33 % saved" in text
    assert "tokdist distill --words Krankenwagen" in text and "<code>epochs</code>: <code>8</code>" in text


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_peft_adapter_holds_only_the_new_rows_and_merges_into_the_hf_export(tokenizer, tmp_path, kind):
    import copy

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokdist_core.api import TokenDistillation
    from tokdist_core.export.formats import check_formats

    lm = make_tiny(tokenizer, kind)
    td = TokenDistillation(lm)
    splits = td.prepare_words(["Krankenwagen", "Schadenfreude"])[0]
    rows = td.train(splits, [], ["subword_mean"]).rows["subword_mean"]
    rows = NewTokenRows("tokdist", rows.words, rows.input_rows + 0.5,  # rows unlike any a resize would make
                        None if rows.output_rows is None else rows.output_rows - 0.5)
    out = td.save(rows, tmp_path / "out", formats="hf,peft")
    adapter = out / "peft"
    assert (adapter / "adapter_model.safetensors").stat().st_size < 100_000  # kilobytes, not the matrix
    hf = AutoModelForCausalLM.from_pretrained(out)
    ext = AutoTokenizer.from_pretrained(adapter)
    new_ids = ext.convert_tokens_to_ids(rows.words)
    base = copy.deepcopy(lm.model)  # the original base, resized to the tokenizer as a user does
    base.resize_token_embeddings(len(ext))
    model = PeftModel.from_pretrained(base, adapter, is_trainable=True)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("trainable_tokens" in n for n in trainable)
    embedded = model.get_input_embeddings()(torch.tensor([new_ids]))[0]
    assert torch.allclose(embedded, rows.input_rows.float())
    # One optimizer step moves the new rows and nothing else.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(list(trainable.values()), lr=1.0)
    model(input_ids=torch.tensor([[new_ids[0], 5, new_ids[1], 7]]), labels=torch.tensor([[new_ids[0], 5, new_ids[1], 7]])).loss.backward()
    optimizer.step()
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert moved and set(moved) <= set(trainable)
    # merge_and_unload() of the adapter as saved is the hf export.
    fresh = copy.deepcopy(lm.model)
    fresh.resize_token_embeddings(len(ext))
    merged = PeftModel.from_pretrained(fresh, adapter).merge_and_unload()
    for name, tensor in hf.state_dict().items():
        torch.testing.assert_close(merged.state_dict()[name], tensor, msg=name)
    assert "PeftModel.from_pretrained" in (adapter / "README.md").read_text()
    assert ("peft #2777" in (adapter / "README.md").read_text()) == (kind == "tied")
    assert check_formats(" peft , hf,peft") == ("peft", "hf")
    rows_only = td.save(rows, tmp_path / "rows-only", formats="rows")  # no model: the card says how to load rows
    assert sorted(p.name for p in rows_only.iterdir()) == sorted([ROWS_FILE, META_FILE, "README.md"])
    assert 'load_rows("path/to/this/folder")' in (rows_only / "README.md").read_text()
    with pytest.raises(ValueError, match="unknown export format.*gguf2.*hf, rows, peft, gguf"):
        td.save(rows, tmp_path / "bad", formats="hf,gguf2")
    assert not (tmp_path / "bad").exists()


def test_save_rows_and_export_model_zip_leave_only_final_files(tokenizer, tmp_path):
    rt = tiny_runtime(tokenizer)
    lm, rows = rt.model("tiny"), tiny_state(rt).rows["subword_mean"]
    save_rows(rows, lm, tmp_path / "rows")
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == sorted([ROWS_FILE, META_FILE])
    assert torch.equal(load_rows(tmp_path / "rows", lm).input_rows, rows.input_rows)
    model, tok = rt.engine("tiny").with_new_tokens(rows)
    zip_path = export_model_zip(model, tok, tmp_path / "m.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zip", "rows"]  # the unzipped folder is gone
    with zipfile.ZipFile(zip_path) as z:
        assert "model.safetensors" in z.namelist() and "tokenizer.json" in z.namelist()


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_estimate_is_an_upper_bound_of_the_saved_folder(tokenizer, tmp_path, kind):
    lm = make_tiny(tokenizer, kind)
    rows = NewTokenRows("x", [WORD], torch.zeros(1, lm.hidden_size), None if kind == "tied" else torch.zeros(1, 32))
    estimate = estimate_model_bytes(lm.model, lm.tokenizer, new_rows=1)
    from tokdist_core.api import TokenDistillation

    model, tok = TokenDistillation(lm).with_new_tokens(rows)
    folder = save_model(model, tok, tmp_path / "m")
    saved = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert saved <= estimate <= saved * 1.2 + 200_000, (saved, estimate)


# --- run_export: layout, content, the cap ---------------------------------------------------------------------

def test_full_export_is_one_final_folder_that_loads_with_transformers(tokenizer, cache, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rt = tiny_runtime(tokenizer)
    state = tiny_state(rt)
    files, model_zip, code, details = export_tab.run_export(rt, "subword_mean", True, state)
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    assert Path(model_zip).parent == folder and [Path(f).parent for f in files] == [folder / "rows"] * 2
    assert details["model_zip"] == "tokdist-subword_mean-model.zip" and details["files"] == [ROWS_FILE, META_FILE]
    # No temporaries left: only the marker (and the lock) are dot-named.
    assert [p.name for p in files_under(cache) if hidden(p, cache)] == [LOCK_FILE, MARKER]
    assert json.loads((folder / MARKER).read_text())["state"] == "done"
    with zipfile.ZipFile(model_zip) as z:
        z.extractall(tmp_path / "model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    (new_id,) = tok.encode(WORD, add_special_tokens=False)
    assert torch.equal(model.get_input_embeddings().weight[new_id], state.rows["subword_mean"].input_rows[0])
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "model" / "README.md")  # the app's zip holds its model card
    assert card.data.library_name == "transformers" and "subword_mean" in card.data.tags and repr(WORD) in card.text


def test_disk_cap_refuses_the_zip_with_a_clear_message_and_rows_only_still_works(tokenizer, cache, tmp_path):
    rt = tiny_runtime(tokenizer, max_export_bytes=1024**2)  # 1 MiB: far below the tiny model's zip
    state = tiny_state(rt)
    with pytest.raises(gr.Error) as err:
        export_tab.run_export(rt, "subword_mean", True, state)
    message = str(err.value.message)
    assert "export space is too small" in message and "export only the new rows" in message
    assert "MiB" in message and "1 MiB for exports" in message
    assert str(tmp_path) not in message and "/" not in message  # no server paths
    assert not [p for p in cache.iterdir() if p.is_dir()]  # a refusal leaves nothing behind
    files, model_zip, _, details = export_tab.run_export(rt, "subword_mean", False, state)  # rows: always allowed
    assert model_zip is None and details["model_zip"] is None
    assert all(Path(f).is_file() for f in files)


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_zip_of_formats_is_within_its_reservation_and_a_refused_format_leaves_nothing(tokenizer, cache, tmp_path,
                                                                                      kind):
    rt = tiny_runtime(tokenizer)
    rt._models["tiny"] = make_tiny(tokenizer, kind)
    state = tiny_state(rt)
    lm, rows = rt.model("tiny"), state.rows["subword_mean"]
    if kind == "untied":
        rows = state.rows["subword_mean"] = NewTokenRows("subword_mean", [WORD], rows.input_rows, rows.input_rows - 1)
    _, model_zip, code, details = export_tab.run_export(rt, "subword_mean", True, state, ["peft", "hf"])
    assert details["zip_formats"] == ["hf", "peft"] and details["model_zip"] == "tokdist-subword_mean-model.zip"
    with zipfile.ZipFile(model_zip) as z:
        z.extractall(tmp_path / "zip")
        names = set(z.namelist())
    assert {"model.safetensors", "tokenizer.json", "README.md", ROWS_FILE, META_FILE, "reproduce.py",
            "peft/adapter_config.json", "peft/adapter_model.safetensors", "peft/tokenizer.json"} <= names
    assert (tmp_path / "zip" / "reproduce.py").read_text() == code
    config = json.loads((tmp_path / "zip" / "peft" / "adapter_config.json").read_text())
    assert config["token_indices"] == [len(tokenizer)]  # the new word's id, right after the vocabulary
    # What the server reserved bounds what was written, format by format (here hf and peft).
    unzipped = sum(p.stat().st_size for p in (tmp_path / "zip").rglob("*") if p.is_file())
    peft_only = sum(p.stat().st_size for p in (tmp_path / "zip" / "peft").rglob("*") if p.is_file())
    assert unzipped <= estimate_export_bytes(lm, rows, "hf,peft")
    assert peft_only <= estimate_export_bytes(lm, rows, "peft") - estimate_export_bytes(lm, rows, "rows")

    before = files_under(cache)
    with pytest.raises(gr.Error) as err:  # the tiny model has no GGUF base: refused with the core's reason
        export_tab.run_export(rt, "subword_mean", True, state, ["hf", "gguf"])
    message = str(err.value.message)
    assert message.startswith("Cannot export hf + gguf: the gguf format") and "test:tiny" in message
    assert "smollm2-135m" in message and "convert_hf_to_gguf.py" in message and "Nothing was exported" in message
    with pytest.raises(gr.Error, match="Unknown zip format.*'rows'"):
        export_tab.run_export(rt, "subword_mean", True, state, ["rows"])
    assert files_under(cache) == before  # refusals reserve and write nothing
    # A zip without formats is the full model (an API call from before the formats): as the page shows it.
    assert export_tab.run_export(rt, "subword_mean", True, state, [])[3]["zip_formats"] == ["hf"]


def test_full_cap_evicts_only_exports_older_than_a_few_minutes(tokenizer, cache):
    rt = tiny_runtime(tokenizer)
    state = tiny_state(rt)
    lm = rt.model("tiny")
    need = 2 * estimate_export_bytes(lm, state.rows["subword_mean"], "hf")
    first_zip = Path(export_tab.run_export(rt, "subword_mean", True, state)[1])
    first = first_zip.parent
    used = sum(p.stat().st_size for p in files_under(first))
    rt.max_export_bytes = need + used - 1  # the next zip fits only without the first export

    with pytest.raises(gr.Error, match="export space is full") as err:  # the first one is still fresh: kept
        export_tab.run_export(rt, "subword_mean", True, state)
    assert "only the new rows" in str(err.value.message) and first_zip.is_file()

    age(first, EXPORT_MIN_KEEP_S + 60)  # now nobody is likely to be downloading it
    second_zip = Path(export_tab.run_export(rt, "subword_mean", True, state)[1])
    assert second_zip.is_file() and not first.exists()
    assert [p for p in files_under(cache) if p.suffix == ".zip"] == [second_zip]


def test_store_is_plain_file_management_with_its_own_errors(tmp_path):
    """The core's store needs no web framework, and says 'no space' with its own ValueError."""
    code = ("import sys; from tokdist_core import ExportStore, ExportSpaceError; "
            "assert 'gradio' not in sys.modules, 'the core store imported gradio'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    store = ExportStore(tmp_path / "exports")
    with pytest.raises(ExportSpaceError) as err:
        store.reserve(3 * 1024**2, 1024**2, advice="Export less.")
    assert isinstance(err.value, ValueError) and (err.value.need, err.value.cap) == (3 * 1024**2, 1024**2)
    assert str(err.value).startswith("The server's export space is too small") and str(err.value).endswith(
        "this server allows 1 MiB for exports. Export less.")
    building = store.reserve(0, 1024**2)  # rows only: always allowed
    assert building.name.startswith(".") and json.loads((building / MARKER).read_text())["state"] == "building"
    (building / ExportStore.ROWS_DIR).mkdir()
    done = store.publish(building)
    assert not building.exists() and not done.name.startswith(".")
    assert json.loads((done / MARKER).read_text())["state"] == "done"
    assert store.clean_stale() == 0  # ours, fresh and alive: kept


# --- start-up clean-up --------------------------------------------------------------------------------------

def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fake_export(root: Path, marker: dict | None, payload: bool = True) -> Path:
    folder = root / os.urandom(16).hex()
    (folder / "rows").mkdir(parents=True)
    if payload:
        (folder / "rows" / ROWS_FILE).write_bytes(b"0" * 100)
    if marker is not None:
        (folder / MARKER).write_text(json.dumps(marker))
    return folder


def test_startup_cleanup_removes_only_clearly_stale_leftovers(cache, tmp_path):
    now, host = time.time(), socket.gethostname()
    me = current_owner()
    cache.mkdir(parents=True)
    keep = {
        "mine, fresh": fake_export(cache, {**me, "created": now, "state": "done", "finished": now}),
        "mine, building": fake_export(cache, {**me, "created": now, "state": "building", "reserved": 9}),
        "other host, fresh": fake_export(cache, {"host": "elsewhere", "pid": 1, "created": now, "state": "done"}),
    }
    gone = {
        "dead process": fake_export(cache, {"host": host, "pid": dead_pid(), "created": now, "state": "building"}),
        "too old": fake_export(cache, {"host": "elsewhere", "pid": 1, "created": now - EXPORT_MAX_AGE_S - 1,
                                       "state": "done"}),
        "emptied by gradio": fake_export(cache, {**me, "created": now - 3600, "finished": now - 3600,
                                                 "state": "done"}, payload=False),
        "no marker": fake_export(cache, None),
    }
    if me["start"] is not None:  # Linux: the process start time tells a reused pid apart
        gone["reused pid"] = fake_export(cache, {**me, "start": "1", "created": now, "state": "building"})
    old = now - EXPORT_MAX_AGE_S - 60
    os.utime(gone["no marker"], (old, old))
    # The earlier layout: <tmp>/tokdist-exports/<method>-xxxx (needed only during its own request).
    legacy_old = export_tab.LEGACY_ROOT / "tokdist-ab12cd34"
    (legacy_old / "tokdist-tokdist").mkdir(parents=True)
    (legacy_old / "tokdist-tokdist-model.zip").write_bytes(b"corrupt")
    os.utime(legacy_old, (old, old))
    legacy_new = export_tab.LEGACY_ROOT / "tokdist-ef56gh78"
    legacy_new.mkdir()
    # Gradio's own copies of earlier exports, in its <sha256> folders; other cached files are not ours.
    hashdir = cache.parent / ("a" * 64)
    hashdir.mkdir()
    for name in ("tokdist-tokdist-model.zip", ".tokdist-tokdist-model.zip.k2j3h4", "new_rows.json"):
        (hashdir / name).write_bytes(b"x")
        os.utime(hashdir / name, (old, old))
    young = cache.parent / ("b" * 64)
    young.mkdir()
    (young / "tokdist-ntp-model.zip").write_bytes(b"x")
    other = cache.parent / ("c" * 64)
    other.mkdir()
    (other / "photo.png").write_bytes(b"x")
    os.utime(other / "photo.png", (old, old))

    removed = export_tab.clean_stale_exports()
    assert removed == len(gone) + 1 + 3  # export folders, the old legacy folder, Gradio's three stale copies
    assert all(p.exists() for p in keep.values()), [k for k, p in keep.items() if not p.exists()]
    assert not any(p.exists() for p in gone.values()), [k for k, p in gone.items() if p.exists()]
    assert not legacy_old.exists() and legacy_new.exists()
    assert not hashdir.exists() and (young / "tokdist-ntp-model.zip").exists() and (other / "photo.png").exists()
    assert export_tab.clean_stale_exports() == 0  # idempotent


# --- a kill in the middle of writing --------------------------------------------------------------------------

CHILD = """
import os, sys, time, zipfile
from pathlib import Path
import transformers
from tests.unit.test_export_safety import tiny_runtime, tiny_state
from tokdist_core.foundations import models
from ui.tabs import export as export_tab

point, ready = sys.argv[1], Path(sys.argv[2])
tokenizer = transformers.AutoTokenizer.from_pretrained(models.dequantized_copy(models.BUNDLED_MODELS["smollm2-135m"]))
if tokenizer.pad_token_id is None:
    tokenizer.pad_token = tokenizer.eos_token
rt = tiny_runtime(tokenizer)

def pause():  # a deterministic "middle of writing": tell the test, then wait for its SIGKILL
    ready.write_text(str(os.getpid()))
    time.sleep(600)

if point == "save":  # the model is saved (unzipped), the zip not started
    original = transformers.PreTrainedModel.save_pretrained
    def save_then_pause(self, *args, **kwargs):
        original(self, *args, **kwargs)
        pause()
    transformers.PreTrainedModel.save_pretrained = save_then_pause
else:  # the zip is half written: the weights are in, the tokenizer not yet
    original = zipfile.ZipFile.write
    def write_then_pause(self, filename, arcname=None, *args, **kwargs):
        original(self, filename, arcname, *args, **kwargs)
        if str(arcname) == "model.safetensors":
            self.fp.flush()
            pause()
    zipfile.ZipFile.write = write_then_pause
export_tab.run_export(rt, "subword_mean", True, tiny_state(rt))
"""


@pytest.mark.parametrize("point", ["save", "zip"])
def test_kill_mid_export_leaves_no_final_name_and_startup_cleanup_removes_it(cache, tmp_path, point):
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), point, str(ready)], cwd=REPO, env=env)
    try:
        deadline = time.time() + 180
        while not ready.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists(), f"the export child did not reach {point!r} (exit code {proc.poll()})"
        files = files_under(cache)
        temporaries = [p for p in files if p.name not in (LOCK_FILE, MARKER)]
        if point == "save":
            # td.save's hidden partial folder of the zip's contents, inside the export's .building- folder
            assert any(p.name == "model.safetensors" and p.parent.name.startswith(f".{export_tab.ZIP_CONTENTS}.")
                       for p in temporaries)
        else:
            partial = [p for p in temporaries if p.name.startswith(".tokdist-subword_mean-model.zip.")]
            assert len(partial) == 1 and partial[0].name.endswith(".partial") and partial[0].stat().st_size > 0
        # Another process's export in progress is not touched by a clean-up (here: ours, the parent's).
        assert export_tab.clean_stale_exports() == 0
        assert files_under(cache) == files
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    files = files_under(cache)  # what the kill left: only temporaries, no file under a final name
    assert files and all(hidden(p, cache) for p in files), [str(p.relative_to(cache)) for p in files]
    assert export_tab.clean_stale_exports() == 1  # the killed process's whole .building- folder
    assert [p.name for p in cache.iterdir()] == [LOCK_FILE]


# --- one copy per export, through a real Gradio server ------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gradio_serves_the_export_without_copying_it(tokenizer, cache):
    from gradio_client import Client

    rt = tiny_runtime(tokenizer)
    with gr.Blocks() as demo:
        state = gr.State(tiny_state(rt))
        tab = export_tab.build(rt)
        event = export_tab.wire(rt, tab, state)
    assert event is not None
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        files, model_zip, _, details = client.predict("subword_mean", True, api_name="/export")
        served = Path(model_zip["path"])
        assert served.parent.parent == cache and served.is_file()
        size = served.stat().st_size
        everything = [p for p in Path(os.environ["GRADIO_TEMP_DIR"]).rglob("*") if p.is_file()]
        assert [p for p in everything if p.stat().st_size == size] == [served]  # one zip on disk, not two
        assert len([p for p in everything if p.name == ROWS_FILE]) == 1
        assert [Path(f["path"]).parent.parent for f in files] == [served.parent] * 2
    finally:
        demo.close()
