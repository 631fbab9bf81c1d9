"""Contexts: text sources, Aho-Corasick mining, windows, train/held-out split and generated snippets.

Runs on real components: the SmolLM2 tokenizer/model from the bundled GGUF, the bundled gensim corpus,
real temp files read through `datasets`.
"""

from __future__ import annotations

import collections
import importlib.metadata
import json
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import check_snippet
from tokdist_core import contexts
from tokdist_core.contexts import (
    BundledSource,
    CorpusError,
    FileSource,
    GeneratedSource,
    HFDataSource,
)
from tokdist_core.foundations import models
from tokdist_core.foundations.snippet import Snippet
from tokdist_core.foundations.vocab import check_new_word, split_word

WORD = " Krankenwagen"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(models.dequantized_copy(models.BUNDLED_MODELS["smollm2-135m"]))




def _filler(i: int) -> str:
    # Distinct prose so windows never deduplicate by accident.
    return f"Report number {i} describes the weather, the roads and the people of town {i}."


# ------------------------------------------------------------------------------------------ bundled corpus


def test_bundled_corpus_is_clean_english(bundled_docs):
    stats = contexts.corpus_stats("bundled")
    by = stats["by_source"]
    assert (
        set(by) == set(contexts.BUNDLED_SOURCES) == {"bundled:lee_background", "bundled:lee", "bundled:enwiki"}
    )
    assert by["bundled:lee_background"]["documents"] == 300
    assert by["bundled:lee"]["documents"] == 50
    assert by["bundled:enwiki"]["documents"] > 1000  # one document per paragraph of 106 articles
    assert stats["chars"] > 2_500_000 and stats["documents"] == len(bundled_docs)
    wiki = "\n".join(t for label, t in bundled_docs if label == "bundled:enwiki")
    for markup in ("[[", "]]", "{{", "}}", "<ref", "</ref", "{|", "|}", "Category:", "thumb|", "'''"):
        assert markup not in wiki, markup
    assert "Autism is a neurodevelopmental disorder" in wiki
    # Cached: a second read is instant.
    t0 = time.perf_counter()
    assert contexts.corpus_stats("bundled")["documents"] == stats["documents"]
    assert time.perf_counter() - t0 < 1.0


def test_bundled_missing_gensim_has_install_hint(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(CorpusError, match=r"pip install --no-deps gensim==4\.4\.0"):
        contexts.iter_documents("bundled")
    assert contexts.bundled_available() is False


# ------------------------------------------------------------------------------------------ mining rules


def test_boundary_rule_mid_sentence(tokenizer):
    split = check_new_word(tokenizer, WORD)
    docs = [
        ("t:plural", _filler(1) + " Two Krankenwagens came down the street. " + _filler(2)),
        ("t:ok_dot", _filler(3) + " Then the Krankenwagen. " + _filler(4)),
        ("t:ok_comma", _filler(5) + " A Krankenwagen, loud and fast. " + _filler(6)),
        ("t:glued_left", _filler(7) + " xKrankenwagen drove by. " + _filler(8)),
        ("t:underscore", _filler(9) + " _Krankenwagen drove by. " + _filler(10)),
        ("t:no_space", _filler(11) + ' "Krankenwagen" drove by. ' + _filler(12)),
        ("t:digit", _filler(13) + " the Krankenwagen2 drove by. " + _filler(14)),
    ]
    snippets = contexts.mine_snippets(docs, tokenizer, [split], snippet_len=40)[WORD]
    assert sorted(s.source for s in snippets) == ["t:ok_comma", "t:ok_dot"]
    for snip in snippets:
        check_snippet(snip, split, 40)
        text = tokenizer.decode(snip.token_ids)
        assert re.search(r" Krankenwagen[.,]", text)


def test_boundary_rule_word_initial_and_tokenization_check(tokenizer):
    initial = split_word(tokenizer, "Krankenwagen")
    docs = [
        ("t:doc_start", "Krankenwagen are fast. " + _filler(1) + " " + _filler(10)),
        ("t:quote", _filler(2) + ' He said "Krankenwagen" twice. ' + _filler(3)),
        ("t:newline", _filler(4) + "\nKrankenwagen everywhere. " + _filler(5)),
        ("t:space", _filler(6) + " Krankenwagen with a space is the other form. " + _filler(7)),
        ("t:glued", _filler(8) + " theKrankenwagen. " + _filler(9)),
    ]
    snippets = contexts.mine_snippets(docs, tokenizer, [initial], snippet_len=30)["Krankenwagen"]
    assert sorted(s.source for s in snippets) == ["t:doc_start", "t:newline", "t:quote"]
    at_start = next(s for s in snippets if s.source == "t:doc_start")
    assert at_start.start == 0 and len(at_start.token_ids) == 30  # window filled after the word
    for snip in snippets:
        check_snippet(snip, initial, 30)

    # The boundary rule accepts "'llama" (apostrophe is not a letter), but byte-level BPE reads "'ll" as a
    # contraction: context ids differ from the standalone split, so that occurrence must be rejected.
    llama = split_word(tokenizer, "llama")
    docs = [("t:apostrophe", _filler(1) + " O'llama again. " + _filler(2)),
            ("t:paren", _filler(3) + " the (llama) again. " + _filler(4))]  # fmt: skip
    got = contexts.mine_snippets(docs, tokenizer, [llama], snippet_len=30)["llama"]
    assert [s.source for s in got] == ["t:paren"]


def test_window_centering_and_document_edges(tokenizer):
    split = check_new_word(tokenizer, WORD)
    n = split.n_subwords
    long_before = " ".join(_filler(i) for i in range(10))
    docs = [
        ("t:middle", long_before + " The Krankenwagen arrived. " + long_before),
        ("t:near_start", "A Krankenwagen arrived. " + long_before),
        ("t:near_end", long_before + " at last a Krankenwagen"),
        ("t:short", "One Krankenwagen only."),
    ]
    got = {s.source: s for s in contexts.mine_snippets(docs, tokenizer, [split], snippet_len=50)[WORD]}
    assert set(got) == {"t:middle", "t:near_start", "t:near_end", "t:short"}
    for snip in got.values():
        check_snippet(snip, split, 50)
    assert len(got["t:middle"].token_ids) == 50 and got["t:middle"].start == (50 - n) // 2
    assert got["t:near_start"].start == 1 and len(got["t:near_start"].token_ids) == 50
    assert got["t:near_end"].start == 50 - n and len(got["t:near_end"].suffix) == 0
    short = got["t:short"]
    assert tokenizer.decode(short.token_ids) == "One Krankenwagen only."


def test_mining_bundled_structure_determinism_and_seed(tokenizer, bundled_docs):
    words = [" Afghanistan", " anarchism", " government", " Aristotle", WORD]
    splits = [split_word(tokenizer, w) for w in words]
    a = contexts.mine_snippets(bundled_docs, tokenizer, splits, snippet_len=50, max_per_word=20, seed=0)
    b = contexts.mine_snippets(bundled_docs, tokenizer, splits, snippet_len=50, max_per_word=20, seed=0)
    c = contexts.mine_snippets(bundled_docs, tokenizer, splits, snippet_len=50, max_per_word=20, seed=1)
    assert list(a) == words and a == b
    assert a[WORD] == []  # absent from the corpus: present as an empty list, never dropped
    for split in splits[:4]:
        snippets = a[split.word]
        assert len(snippets) == 20
        assert len({s.token_ids for s in snippets}) == 20  # deduplicated
        full = [s for s in snippets if len(s.token_ids) == 50]
        assert len(full) >= 15
        want_before = (50 - split.n_subwords) // 2
        for snip in snippets:
            check_snippet(snip, split, 50)
            assert snip.source.startswith("bundled:")
            # Word in the middle, unless a document edge is closer: then the window runs up to that edge.
            if snip.start < want_before:
                prefix = tokenizer.decode(snip.prefix)
                assert any(t.startswith(prefix) for _, t in bundled_docs)
            elif snip.start > want_before:
                suffix = tokenizer.decode(snip.suffix)
                assert any(t.endswith(suffix) for _, t in bundled_docs)
        assert {s.token_ids for s in c[split.word]} != {s.token_ids for s in snippets}
    # A word's selection does not depend on the other words requested.
    alone = contexts.mine_snippets(
        bundled_docs, tokenizer, [splits[0]], snippet_len=50, max_per_word=20, seed=0
    )
    assert alone[words[0]] == a[words[0]]


def test_mining_timing_100_words(tokenizer, bundled_docs, capsys):
    text = " ".join(t for _, t in bundled_docs)
    counts = collections.Counter(re.findall(r"(?<= )[A-Za-z]{4,}(?=[ .,;])", text))
    splits = []
    for word, _ in counts.most_common(3000):
        s = split_word(tokenizer, " " + word)
        if s.n_subwords >= 2:
            splits.append(s)
        if len(splits) == 100:
            break
    frequent = [split_word(tokenizer, " " + w) for w, _ in counts.most_common(100)]
    t0 = time.perf_counter()
    res_multi = contexts.mine_snippets(bundled_docs, tokenizer, splits, snippet_len=50, max_per_word=35)
    t1 = time.perf_counter()
    res_freq = contexts.mine_snippets(bundled_docs, tokenizer, frequent, snippet_len=50, max_per_word=35)
    t2 = time.perf_counter()
    with capsys.disabled():
        print(
            f"\n[timing] mine 100 multi-subword words: {t1 - t0:.2f}s, {sum(map(len, res_multi.values()))} snippets;"
            f" 100 most frequent words: {t2 - t1:.2f}s, {sum(map(len, res_freq.values()))} snippets"
        )
    assert all(len(v) == 35 for v in res_freq.values())


# ------------------------------------------------------------------------------------------ file sources


def test_local_files_txt_jsonl_json_parquet_and_folder(tmp_path):
    txt = tmp_path / "notes.txt"
    long_line = "This long line is a whole document on its own. " * 6
    txt.write_text(
        "First paragraph, hard\nwrapped over two lines.\n\nSecond paragraph.\n\n"
        + f"{long_line}\n{long_line}x\n",
        encoding="utf-8",
    )
    docs = list(contexts.iter_documents(str(txt)))
    assert docs[0] == ("file:notes.txt", "First paragraph, hard wrapped over two lines.")
    assert docs[1] == ("file:notes.txt", "Second paragraph.")
    assert len(docs) == 4  # the two long lines are two documents

    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps({"body": f"doc {i}", "id": i}) for i in range(3)), encoding="utf-8")
    assert [t for _, t in contexts.iter_documents(str(jsonl), text_column="body")] == [
        "doc 0",
        "doc 1",
        "doc 2",
    ]
    with pytest.raises(CorpusError, match=r"no column 'text'.*body, id"):
        list(contexts.iter_documents(str(jsonl)))

    js = tmp_path / "b.json"
    js.write_text(json.dumps([{"text": "json one"}, {"text": "json two"}]), encoding="utf-8")
    pq_path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["parquet one", None, "parquet two"]}), pq_path)
    got = list(contexts.iter_documents([str(js), str(pq_path)]))
    assert got == [
        ("file:b.json", "json one"),
        ("file:b.json", "json two"),
        ("file:c.parquet", "parquet one"),
        ("file:c.parquet", "parquet two"),
    ]

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x.txt").write_text("Folder text one.", encoding="utf-8")
    (folder / "skip.bin").write_bytes(b"\x00\x01")
    assert list(contexts.iter_documents(str(folder))) == [("file:x.txt", "Folder text one.")]
    assert len(list(contexts.iter_documents([str(folder), str(txt)], max_documents=3))) == 3


def test_source_errors(tmp_path):
    with pytest.raises(CorpusError, match="missing.txt"):
        contexts.iter_documents(str(tmp_path / "missing.txt"))  # raised at the call, not lazily
    bad = tmp_path / "data.xlsx"
    bad.write_bytes(b"x")
    with pytest.raises(CorpusError, match="Unsupported file type"):
        contexts.iter_documents(str(bad))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError, match="no readable text files"):
        contexts.iter_documents(str(empty))
    with pytest.raises(CorpusError, match="collect_contexts"):
        contexts.iter_documents("auto")
    with pytest.raises(CorpusError, match="No data source"):
        contexts.iter_documents([])
    with pytest.raises(CorpusError, match="Bad dataset spec"):
        contexts.iter_documents("hf:")
    assert issubclass(CorpusError, ValueError)
    assert contexts.parse_hf_spec("hf:wikitext:wikitext-2-raw-v1:validation") == contexts.HFDataSource(
        "wikitext", "wikitext-2-raw-v1", "validation"
    )


def test_hf_streaming_local_standin(tmp_path):
    folder = tmp_path / "my_dataset"
    (folder / "data").mkdir(parents=True)
    rows = [f"Streaming document {i} mentions a Krankenwagen." for i in range(30)]
    pq.write_table(pa.table({"content": rows, "n": list(range(30))}), folder / "data" / "train.parquet")
    spec = f"hf:{folder}"
    docs = list(contexts.iter_documents(spec, text_column="content", max_documents=12))
    assert len(docs) == 12 and docs[0] == (spec, rows[0])
    assert len(list(contexts.iter_documents(spec, text_column="content"))) == 30
    with pytest.raises(CorpusError, match=r"no column 'text'.*content, n"):
        list(contexts.iter_documents(spec))
    direct = list(contexts.iter_hf_dataset(str(folder), split="train", text_column="content", max_documents=5))
    assert direct == docs[:5]
    # A typed source carries its own cap and column; the call's max_documents still caps the total.
    typed = HFDataSource(str(folder), max_documents=7, text_column="content")
    assert list(contexts.iter_documents(typed)) == docs[:7]
    assert list(contexts.iter_documents([typed], max_documents=3)) == docs[:3]
    with pytest.raises(CorpusError, match="max_documents must be a positive integer, got 0"):
        contexts.iter_hf_dataset(str(folder), max_documents=0)


def test_hf_unknown_dataset_clear_error(monkeypatch):
    # Offline mode makes the hub failure immediate instead of retrying for ~25 s.
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CorpusError, match="tokdist-nonexistent/dataset-xyz"):
        list(contexts.iter_documents("hf:tokdist-nonexistent/dataset-xyz"))


# ------------------------------------------------------------------------------------------ the data parser


@pytest.mark.parametrize(("data", "want"), [
    ("auto", [BundledSource(optional=True), GeneratedSource()]),
    (" bundled ", [BundledSource()]),
    ("generated", [GeneratedSource()]),
    ("hf:wikitext", [HFDataSource("wikitext")]),
    ("hf:wikitext:wikitext-2-raw-v1", [HFDataSource("wikitext", "wikitext-2-raw-v1")]),
    ("hf:wikitext:wikitext-2-raw-v1:validation", [HFDataSource("wikitext", "wikitext-2-raw-v1", "validation")]),
    ("hf:owner/name::test", [HFDataSource("owner/name", None, "test")]),
    ("notes.txt", [FileSource(Path("notes.txt"))]),
    ("~/corpus", [FileSource(Path("~/corpus"))]),  # expanded and checked when read, not when parsed
    (Path("a.jsonl"), [FileSource(Path("a.jsonl"))]),
    (["generated", "a.txt", "hf:x"], [GeneratedSource(), FileSource(Path("a.txt")), HFDataSource("x")]),
    (("a.txt", "./a.txt", "bundled", "bundled"), [FileSource(Path("a.txt")), BundledSource()]),
    # "auto" anywhere in a list lets the bundled corpus be missing, and it is read once.
    (["bundled", "auto"], [BundledSource(optional=True), GeneratedSource()]),
    (["auto", "generated", "bundled"], [BundledSource(optional=True), GeneratedSource()]),
    (HFDataSource("x", hub_only=True), [HFDataSource("x", hub_only=True)]),
    ([FileSource("b.jsonl", text_column="body"), GeneratedSource(), "hf:x:c"],
     [FileSource(Path("b.jsonl"), "body"), GeneratedSource(), HFDataSource("x", "c")]),
])  # fmt: skip
def test_parse_sources_string_forms_and_typed_objects(data, want):
    assert contexts.parse_sources(data) == want


@pytest.mark.parametrize("source", [
    BundledSource(), GeneratedSource(), FileSource(Path("/data/notes.txt")), HFDataSource("wikitext"),
    HFDataSource("wikitext", "wikitext-2-raw-v1"), HFDataSource("w", None, "test"), HFDataSource("w", "c", "test"),
])  # fmt: skip
def test_parse_sources_reads_back_each_spec(source):
    assert contexts.parse_sources(source.spec) == [source]


@pytest.mark.parametrize(("data", "generation", "message"), [
    ([], True, "No data source given: use 'auto', 'bundled', 'generated', file paths or 'hf:<dataset>'."),
    ([], False, "No data source given: use 'bundled', file paths, folders or 'hf:<dataset>'."),
    ("auto", False, "'auto' is not a text source; it is handled by collect_contexts()."),
    (["bundled", " generated"], False, "'generated' is not a text source; it is handled by collect_contexts()."),
    (GeneratedSource(), False, "GeneratedSource() is not a text source; it is handled by collect_contexts()."),
    ("", True, "Empty or non-text data source ''."),
    (["bundled", "  "], False, "Empty or non-text data source '  '."),
    (5, True, "Data sources are strings, paths or BundledSource / FileSource / HFDataSource / GeneratedSource, "
              "got int."),
    (["bundled", None], True, "Data sources are strings, paths or BundledSource / FileSource / HFDataSource / "
                              "GeneratedSource, got NoneType."),
    ("hf:", True, "Bad dataset spec 'hf:': use 'hf:<name>', 'hf:<name>:<config>' or 'hf:<name>:<config>:<split>'."),
    ("hf:a:b:c:d", False, "Bad dataset spec 'hf:a:b:c:d'"),
])  # fmt: skip
def test_parse_sources_errors(data, generation, message):
    with pytest.raises(CorpusError) as err:
        contexts.parse_sources(data, generation=generation)
    assert str(err.value).startswith(message)


def test_typed_source_options_are_checked():
    with pytest.raises(CorpusError, match="max_documents must be a positive integer, got 0"):
        HFDataSource("x", max_documents=0)
    with pytest.raises(CorpusError, match="max_documents must be a positive integer, got True"):
        HFDataSource("x", max_documents=True)
    with pytest.raises(CorpusError, match="over the limit of 20000"):
        HFDataSource("x", hub_only=True, max_documents=20_001)
    assert HFDataSource("x", max_documents=50_000).max_documents == 50_000  # a library user may read more
    with pytest.raises(CorpusError, match="text_column"):
        FileSource("a.jsonl", text_column="")
    with pytest.raises(CorpusError, match="revision"):
        HFDataSource("x", revision="main branch")
    assert HFDataSource("x", revision="refs/convert/parquet").revision == "refs/convert/parquet"


def test_file_source_checks_when_read(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps({"body": f"doc {i}"}) for i in range(2)), encoding="utf-8")
    assert list(contexts.iter_documents(FileSource(jsonl, text_column="body"))) == [
        ("file:a.jsonl", "doc 0"), ("file:a.jsonl", "doc 1")]  # fmt: skip
    missing = FileSource(tmp_path / "missing.txt")  # building it checks nothing ...
    with pytest.raises(CorpusError, match="is neither 'bundled', an existing file or folder"):
        contexts.iter_documents(missing)  # ... reading it does, at the call


def test_auto_without_gensim_falls_back_to_generation(monkeypatch):
    monkeypatch.setattr(contexts, "bundled_available", lambda: False)
    assert contexts._plan(contexts.parse_sources("auto")) == (
        [], True, ["bundled corpus unavailable (pip install --no-deps gensim==4.4.0); generated snippets only"])
    only_file = contexts._plan(contexts.parse_sources(["auto", "a.txt"]))
    assert only_file == ([FileSource(Path("a.txt"))], True, ["bundled corpus unavailable (pip install --no-deps "
                                                             "gensim==4.4.0)"])
    assert contexts._plan(contexts.parse_sources("bundled")) == ([BundledSource()], False, [])  # fails when read
    monkeypatch.setattr(contexts, "bundled_available", lambda: True)
    assert contexts._plan(contexts.parse_sources(["a.txt", "auto"])) == (
        [FileSource(Path("a.txt")), BundledSource(optional=True)], True, [])


# ------------------------------------------------------------------------------------------ split rule


def _fake(i: int) -> Snippet:
    return Snippet(WORD, (i, 1, 2), 1, 1, "t")


@pytest.mark.parametrize(
    ("k", "want"),
    [(40, (25, 10)), (35, (25, 10)), (14, (10, 4)), (2, (1, 1)), (1, (1, 0)), (0, (0, 0))],
)
def test_split_train_heldout_proportional(k, want):
    snippets = [_fake(i) for i in range(k)]
    train, heldout = contexts.split_train_heldout(snippets, 25, 10)
    assert (len(train), len(heldout)) == want
    assert heldout == snippets[: len(heldout)]
    assert not set(train) & set(heldout)


# ------------------------------------------------------------------------------------------ generation


# ------------------------------------------------------------------------------------------ collect_contexts


# ------------------------------------------------------------------------------------------ remote users


@pytest.mark.parametrize("name", ["/etc", "../../etc", "a/b/c", ".hidden", "x" * 200, "a b", "text", "JSON",
                                  "parquet", "owner/.git", ""])
def test_hub_only_dataset_names_refuse_paths_and_file_builders(name):
    with pytest.raises(CorpusError, match="dataset id|file-format builder|Bad dataset spec"):
        contexts.parse_hf_spec(f"hf:{name}", hub_only=True)


def test_hub_only_source_never_reads_a_local_folder_of_that_name(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "train.jsonl").write_text(json.dumps({"text": "planted secret text"}) + "\n")
    monkeypatch.chdir(tmp_path)
    source = contexts.parse_hf_spec("hf:private", hub_only=True)
    assert source.load_path == "hf://datasets/private"
    with pytest.raises(CorpusError, match="Hub") as err:
        list(contexts.iter_documents([source]))
    assert "secret" not in str(err.value)
    # The library (a user on their own machine) still reads the folder when asked for it by name.
    assert [text for _, text in contexts.iter_documents("hf:private")] == ["planted secret text"]


def test_a_word_whose_first_piece_is_a_lone_space_is_mined_where_discovery_counts_it(tokenizer):
    # " 19th" splits ' ', '1', '9', 'th': the space token ends where the word's surface starts.
    from tokdist_core.contexts.mining import count_occurrences, mine_snippets

    split = check_new_word(tokenizer, " 19th")
    assert tokenizer.convert_ids_to_tokens(list(split.ids))[0] == "Ġ"
    docs = [("d", "It was built in the 19th century, rebuilt late in the 19th, and it still stands on the hill "
                  "where people of the 19th came to see the river and the old stone bridge below the town.")]
    assert count_occurrences(docs, [" 19th"]) == [3]
    snippets = mine_snippets(docs, tokenizer, [split], 12, seed=0)[" 19th"]
    assert len(snippets) == 3
    for s in snippets:
        assert s.token_ids[s.start : s.start + s.n_subwords] == split.ids
