"""Discovery: which words to add, from a corpus, another tokenizer or a frequency list, on real tokenizers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from tests.helpers import DISCOVERY_DOCS, cli_probe, error_line, make_tiny
from tokdist_core import Cancelled, CorpusError, DiscoveryError, TokenDistillation, cli, discovery
from tokdist_core.contexts import iter_documents
from tokdist_core.contexts.mining import count_occurrences, mine_snippets
from tokdist_core.discovery import candidates_from_tokenizer, read_frequency_list
from tokdist_core.foundations import models, vocab
from tokdist_core.foundations.vocab import check_new_word


@pytest.fixture
def td(tokenizer) -> TokenDistillation:
    return TokenDistillation(make_tiny(tokenizer))  # the real SmolLM2 tokenizer on a tiny model


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in DISCOVERY_DOCS), encoding="utf-8")
    return path


def _base_tokens(tokenizer, data) -> int:
    return sum(len(tokenizer(t, add_special_tokens=False).input_ids) for _l, t in iter_documents(data))


# -- 1. words and phrases counted in a corpus -------------------------------------------------------

def test_corpus_words_are_counted_like_mining_and_ranked_by_tokens_saved(td, tokenizer, corpus):
    found = td.discover(str(corpus), top=50, min_count=1)
    by_token = {c.token: c for c in found.candidates}
    # " Krankenwagen" after a space and before a word boundary: 3 in the first text; never "Krankenwagens",
    # "(Krankenwagen)" or a text's first word.
    assert by_token[" Krankenwagen"].count == 3
    assert by_token[" Schopenhauer"].count == 2 and by_token[" Arafat"].count == 2
    assert found.corpus_tokens == _base_tokens(tokenizer, str(corpus)) and found.documents == len(DISCOVERY_DOCS)
    assert found.model == "tiny-tied" and found.source == "corpus" and found.data == str(corpus)
    total = 0
    for c in found.candidates:
        split = check_new_word(tokenizer, c.token)
        assert (c.subwords, c.ids) == (split.pieces, split.ids)
        assert c.tokens_saved == c.count * (len(c.subwords) - 1)
        total += c.tokens_saved
        assert c.cumulative_saved_pct == round(100 * total / found.corpus_tokens, 4)
    saved = [c.tokens_saved for c in found.candidates]
    assert saved == sorted(saved, reverse=True)
    # The counts are mining's: one accepted snippet per occurrence (all contexts differ here).
    words = found.words
    assert [c.count for c in found.candidates] == count_occurrences(iter_documents(str(corpus)), words)
    mined = mine_snippets(iter_documents(str(corpus)), tokenizer, found.splits, snippet_len=12)
    assert [len(mined[w]) for w in words] == [c.count for c in found.candidates]
    assert td.discover(str(corpus), top=2, min_count=1).words == words[:2]


def test_filters_say_how_many_they_removed(td, corpus):
    found = td.discover(str(corpus), min_count=1, min_chars=4)
    assert " 2019" not in found.words and found.filtered["no letter (digits or punctuation only)"] == 1
    assert found.filtered["already one token"] > 10 and " the" not in found.words
    assert all(len(w) > 4 for w in found.words) and found.filtered["shorter than min_chars characters"] > 0
    assert " Schopenhauer" not in td.discover(str(corpus), min_count=3).words


def test_phrases_never_cross_punctuation_or_line_breaks_and_skip_stop_word_edges(td, corpus):
    found = td.discover(str(corpus), max_words=3, min_count=1, top=500)
    assert found.words[:1] == [" Krankenwagen"]
    by_token = {c.token: c for c in found.candidates}
    assert by_token[" New York"].count == 4  # "New York's" counts, "New Yorker" does not
    assert by_token[" Prime Minister"].count == 3
    assert " Yasser Arafat" not in found.words  # only at the start of a text: no leading space
    assert " York is" not in found.words and " York The" not in found.words  # across "\n" and ". "
    assert " Prime Minister of" not in found.words and found.filtered["phrase starts or ends with a stop word"] > 0
    everything = td.discover(str(corpus), max_words=2, min_count=1, top=500, stop_words=None)
    assert " of the" in everything.words and " York The" not in everything.words
    assert " Schopenhauer Schopenhauer" not in everything.words  # ", " between them


def test_report_json_has_the_documented_shape(td, corpus):
    report = td.discover(str(corpus), max_words=2, min_count=1, top=3).to_json()
    assert {"model", "data", "corpus_tokens", "candidates"} <= set(report)
    assert json.loads(json.dumps(report)) == report
    for c in report["candidates"]:
        assert {"token", "count", "subwords", "tokens_saved", "cumulative_saved_pct"} <= set(c)
        assert isinstance(c["subwords"], list) and c["token"].startswith(" ")


def test_any_text_source_works_hf_folder_txt_file_and_lists(td, tmp_path, corpus):
    hf_folder = tmp_path / "hf_standin"
    hf_folder.mkdir()
    (hf_folder / "train.jsonl").write_text(corpus.read_text(encoding="utf-8"), encoding="utf-8")
    plain = td.discover(str(corpus), min_count=1)
    via_hf = td.discover(f"hf:{hf_folder}", min_count=1)
    assert via_hf.words == plain.words and via_hf.corpus_tokens == plain.corpus_tokens
    txt = tmp_path / "notes.txt"
    txt.write_text("\n\n".join(DISCOVERY_DOCS), encoding="utf-8")
    both = td.discover([str(corpus), str(txt)], min_count=1)
    assert both.documents == 2 * len(DISCOVERY_DOCS)
    assert {c.token: c.count for c in both.candidates}[" Krankenwagen"] == 6
    assert td.discover(str(corpus), min_count=1, max_documents=1).documents == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"top": 0}, "top must be an integer between 1 and 100000"),
    ({"top": discovery.MAX_TOP + 1}, "top must be"), ({"top": "10"}, "top must be"),
    ({"max_words": 4}, "max_words must be an integer between 1 and 3"), ({"max_words": 0}, "max_words"),
    ({"min_count": 0}, "min_count must be"), ({"min_chars": 65}, "min_chars must be"),
    ({"max_documents": 0}, "max_documents must be"), ({"stop_words": "german"}, "stop_words must be"),
])
def test_bad_options_are_refused_before_reading_anything(td, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        td.discover(str(tmp_path / "missing.txt"), **kwargs)  # the option, not the missing file, is reported


@pytest.mark.parametrize("name, content, match", [
    ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    ("latin1.txt", "caf\xe9 au lait".encode("latin-1"), "not UTF-8 text"),
    ("empty.txt", b"", "corpus is empty"),
    ("blank.txt", b"  \n\n \n", "corpus is empty"),
    ("data.bin", b"hello", "Unsupported file type"),
])
def test_unreadable_corpora_are_clear_errors(td, tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=match):
        td.discover(str(path))


def test_generated_text_and_missing_files_are_not_corpora(td, tmp_path):
    with pytest.raises(CorpusError, match="'generated' is not a corpus"):
        td.discover("generated")
    with pytest.raises(CorpusError, match="neither 'bundled', an existing file"):
        td.discover(str(tmp_path / "missing.txt"))


def test_a_set_cancel_flag_stops_reading(td, corpus):
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        td.discover(str(corpus), cancel=stop)


# -- 2. another tokenizer's vocabulary --------------------------------------------------------------

@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Two small tokenizers trained on bundled text: byte-level BPE ('Ġ') and Metaspace BPE ('▁', byte tokens)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tok_models

    texts = [t for _l, t in iter_documents("bundled", max_documents=300)]
    root = tmp_path_factory.mktemp("tokenizers")

    byte_level = Tokenizer(tok_models.BPE())
    byte_level.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    byte_level.decoder = decoders.ByteLevel()
    byte_level.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=byte_level, eos_token="<|endoftext|>").save_pretrained(root / "bpe")

    metaspace = Tokenizer(tok_models.BPE(unk_token="<unk>", byte_fallback=True))
    metaspace.pre_tokenizer = pre_tokenizers.Metaspace()
    metaspace.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    metaspace.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    spec = json.loads(metaspace.to_str())  # byte-fallback tokens as plain vocabulary, like Llama's <0x0A>
    for i in range(256):
        spec["model"]["vocab"].setdefault(f"<0x{i:02X}>", len(spec["model"]["vocab"]))
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), unk_token="<unk>",
                            bos_token="<s>", eos_token="</s>").save_pretrained(root / "metaspace")

    wordpiece = Tokenizer(tok_models.WordPiece(unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece()
    wordpiece.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=["[UNK]"],
                                                                   show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]").save_pretrained(root / "wordpiece")
    return {"bpe": root / "bpe", "metaspace": root / "metaspace", "wordpiece": root / "wordpiece"}


def _check_vocabulary_candidates(found, tokenizer, other, to_vocab_token) -> None:
    assert found.candidates and found.corpus_tokens is None and found.data is None
    ranks = [c.source_rank for c in found.candidates]
    assert ranks == sorted(ranks)  # no corpus: the other tokenizer's own order
    for c in found.candidates:
        assert c.token.startswith(" ") and c.count is None and c.tokens_saved is None
        assert other.convert_ids_to_tokens(c.source_rank) == to_vocab_token(c.token)
        assert check_new_word(tokenizer, c.token).ids == c.ids and len(c.ids) >= 2
    assert found.filtered["already one token"] > 100 and found.filtered["word continuation (no leading space)"] > 100
    assert found.filtered["single character"] > 10 and found.filtered["special token"] >= 1


def test_byte_level_vocabulary_maps_the_g_marker_to_a_leading_space(td, tokenizer, trained):
    other = AutoTokenizer.from_pretrained(trained["bpe"])
    found = td.discover(from_tokenizer=str(trained["bpe"]), top=100_000, min_chars=1)
    pre_tokenize = other.backend_tokenizer.pre_tokenizer.pre_tokenize_str  # text -> byte-level alphabet
    _check_vocabulary_candidates(found, tokenizer, other, lambda t: "".join(p for p, _span in pre_tokenize(t)))
    assert found.source == f"tokenizer:{trained['bpe']}"
    assert " Arafat" in found.words and not any("Ġ" in w for w in found.words)
    assert all(other.decode([c.source_rank]) == c.token for c in found.candidates)


def test_metaspace_vocabulary_maps_the_sentencepiece_marker_and_skips_byte_tokens(td, tokenizer, trained):
    other = AutoTokenizer.from_pretrained(trained["metaspace"])
    found = td.discover(from_tokenizer=other, top=100_000, min_chars=1)
    _check_vocabulary_candidates(found, tokenizer, other, lambda t: "▁" + t[1:])
    assert found.filtered["byte token"] == 256 and " Arafat" in found.words


def test_wordpiece_vocabulary_keeps_word_initial_tokens_and_skips_hash_continuations(td, tokenizer, trained):
    other = AutoTokenizer.from_pretrained(trained["wordpiece"])
    found = td.discover(from_tokenizer=other, top=100_000)
    assert " Arafat" in found.words and not any("#" in w for w in found.words)
    for c in found.candidates:
        assert other.convert_ids_to_tokens(c.source_rank) == c.token[1:]
    assert found.filtered["word continuation (no leading space)"] > 100


def test_the_embedded_tokenizer_as_the_other_one(trained):
    small = AutoTokenizer.from_pretrained(trained["bpe"])
    smollm = AutoTokenizer.from_pretrained(models.dequantized_copy(models.BUNDLED_MODELS["smollm2-135m"]))
    found = candidates_from_tokenizer(small, models.dequantized_copy(models.BUNDLED_MODELS["smollm2-135m"]), top=200)
    assert len(found.candidates) == 200
    for c in found.candidates:
        assert smollm.decode([c.source_rank]) == c.token and len(small(c.token).input_ids) >= 2
    # Its own vocabulary holds nothing new for itself.
    assert candidates_from_tokenizer(smollm, smollm, top=10).candidates == []


def test_vocabulary_counted_in_a_corpus_is_ranked_by_tokens_saved(td, tokenizer, trained, corpus):
    found = td.discover(str(corpus), from_tokenizer=str(trained["metaspace"]), min_count=1, top=100)
    assert found.corpus_tokens == _base_tokens(tokenizer, str(corpus))
    assert " Arafat" in found.words and found.filtered["fewer than min_count occurrences"] > 100
    assert [c.count for c in found.candidates] == count_occurrences(iter_documents(str(corpus)), found.words)
    saved = [c.tokens_saved for c in found.candidates]
    assert saved == sorted(saved, reverse=True) and all(s > 0 for s in saved)


def test_unloadable_tokenizers_are_named(td, tmp_path, monkeypatch):
    import huggingface_hub

    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "file.json").write_text("{}")
    for spec, match in [(tmp_path / "empty_folder", "folder holds no loadable tokenizer"),
                        (tmp_path / "file.json", "is a file"), ("./no/such/folder", "does not exist"),
                        ("", "No tokenizer given")]:
        with pytest.raises(DiscoveryError, match=match) as info:
            td.discover(from_tokenizer=str(spec))
        assert str(spec) in str(info.value)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DiscoveryError, match="'no-such-org/tokenizer-xyz'.*Hub may be unreachable"):
        td.discover(from_tokenizer="no-such-org/tokenizer-xyz")


# -- 3. frequency lists ---------------------------------------------------------------------------

TSV_LINES = [
    "Krankenwagen\t120", "New York\t50", "the\t1000", "bad line", "Schopenhauer 30", "x\t5", "2019\t9",
    "Krankenwagen\t3", "Zeitgeist\t-4", "Zeitgeist\t1", "a\tb\tc", "", "bad\x07word\t5",
]


def test_frequency_list_is_ranked_and_every_other_line_is_reported(td, tmp_path):
    path = tmp_path / "freq.tsv"
    path.write_text("\n".join(TSV_LINES) + "\n", encoding="utf-8")
    found = td.discover(frequency_list=path)
    assert found.words == [" Krankenwagen", " Schopenhauer", " New York"]  # 120x4, 30x2, 50x1 saved
    assert [c.tokens_saved for c in found.candidates] == [480, 60, 50]
    assert [c.source_rank for c in found.candidates] == [1, 5, 2] and found.corpus_tokens is None
    reasons = {r.line: r.reason for r in found.rejected}
    assert sorted(reasons) == [3, 4, 6, 7, 8, 9, 10, 11, 13]  # every non-blank line not kept, by number
    assert reasons[3] == "already one token" and reasons[4] == "count 'line' is not a whole number"
    assert reasons[6].startswith("shorter") and reasons[7].startswith("no letter")
    assert reasons[8] == "duplicate of line 1" and "whole number" in reasons[9]
    assert reasons[10].startswith("fewer than min_count") and "3 tab-separated fields" in reasons[11]
    assert "control" in reasons[13]
    assert found.filtered["invalid line or word"] == 5


def test_jsonl_frequency_list(tmp_path):
    rows = [{"word": "Krankenwagen", "count": 12}, {"word": "New York", "count": 3}, "not json",
            {"word": 5, "count": 1}, {"word": "Zeitgeist", "count": 2.5}, {"word": "Zeitgeist", "count": True}]
    path = tmp_path / "freq.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows), encoding="utf-8")
    parsed = read_frequency_list(path)
    assert parsed.entries == [(1, " Krankenwagen", 12), (2, " New York", 3)]
    assert [(r.line, r.reason.split(" (")[0]) for r in parsed.rejected] == [
        (3, "not JSON"), (4, 'expected {"word": "...", "count": N}'), (5, "count 2.5 is not a whole number >= 0"),
        (6, "count True is not a whole number >= 0")]


@pytest.mark.parametrize("content, match", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    ("Krankenwagen\t3\n".encode("utf-16"), "binary file .*UTF-16"),
    ("Caf\xe9\t3\n".encode("latin-1"), "not UTF-8 text \\(line 1"),
    (b"Lorem ipsum dolor sit amet\nconsectetur adipiscing elit\n", "no valid word<TAB>count or JSONL line"),
    (b"", "no valid .*it has no lines"),
])
def test_junk_frequency_lists_are_clear_errors(tmp_path, content, match):
    path = tmp_path / "freq.txt"
    path.write_bytes(content)
    with pytest.raises(DiscoveryError, match=match):
        read_frequency_list(path)


def test_frequency_list_arguments(td, tmp_path):
    with pytest.raises(DiscoveryError, match="is a folder"):
        read_frequency_list(tmp_path)
    with pytest.raises(DiscoveryError, match="does not exist"):
        read_frequency_list(tmp_path / "missing.tsv")
    (tmp_path / "f.tsv").write_text("Krankenwagen\t3\n")
    with pytest.raises(ValueError, match="brings its own counts"):
        td.discover("bundled", frequency_list=tmp_path / "f.tsv")
    with pytest.raises(ValueError, match="not both"):
        td.discover(frequency_list=tmp_path / "f.tsv", from_tokenizer="x")


# -- 4. the command line ----------------------------------------------------------------------------

def discover_probe(*args: str):
    return cli_probe("discover", *args)


def test_cli_discover_takes_its_limits_from_the_library():
    from tokdist_core.foundations import limits

    parser = cli.build_parser()
    for flag, top in (("--top", limits.MAX_TOP), ("--phrases", limits.MAX_PHRASE_WORDS),
                      ("--min-chars", limits.MAX_WORD_CHARS)):
        assert getattr(parser.parse_args(["discover", flag, str(top)]), flag[2:].replace("-", "_")) == top
        with pytest.raises(SystemExit):
            parser.parse_args(["discover", flag, str(top + 1)])
    assert discovery.MAX_TOP == limits.MAX_TOP and vocab.MAX_PHRASE_WORDS == limits.MAX_PHRASE_WORDS


def test_cli_discover_help_imports_no_torch():
    proc = discover_probe("--help")
    assert proc.returncode == 0 and "--phrases" in proc.stdout and "NO_TORCH" in proc.stderr


def _bad_files(tmp_path: Path) -> dict[str, str]:
    files = {"png.txt": b"\x89PNG\x00\x00", "empty.txt": b"", "junk.tsv": b"just some words\nand more\n"}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return {name: str(tmp_path / name) for name in files}


def test_cli_discover_mistakes_exit_2_before_loading_anything(tmp_path):
    f = _bad_files(tmp_path)
    cases = [
        (["--top", "0"], "argument --top: must be between 1 and 100000"), (["--top", "1000000000"], "--top: must be between 1 and 100000"),
        (["--phrases", "4"], "argument --phrases: must be between 1 and 3"), (["--phrases", "two"], "--phrases"),
        (["--data", "generated"], "discovery counts words in existing text"),
        (["--data", str(tmp_path / "missing.txt")], "no such file or folder"),
        (["--data", f["png.txt"]], "binary file"), (["--data", f["empty.txt"]], "corpus is empty"),
        (["--frequency-list", f["png.txt"]], "binary file"), (["--frequency-list", f["junk.tsv"]], "no valid"),
        (["--frequency-list", f["junk.tsv"], "--data", "bundled"], "brings its own counts"),
        (["--frequency-list", f["junk.tsv"], "--from-tokenizer", "x"], "not both"),
        (["--frequency-list", f["junk.tsv"], "--phrases", "2"], "--phrases counts phrases in a corpus"),
        (["--from-tokenizer", "./no/such/tokenizer"], "does not exist"),
        (["--json", str(tmp_path / "nope" / "r.json")], "does not exist; create it first"),
    ]
    for args, expected in cases:
        proc = discover_probe(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and expected in proc.stderr, (args, proc.stderr)
        assert "NO_TORCH" in proc.stderr, (args, proc.stderr)




# -- numbers on tokenizers that read them digit by digit --------------------------------------------

def test_numbers_are_left_out_where_the_tokenizer_reads_digits_one_by_one(td, tokenizer, tmp_path, trained):
    text = ("Jazz of the 1960s and the 1960s charts, the 19th century and the 19th again; "
            "a Krankenwagen came, then a Krankenwagen left in the 1960s.")
    path = tmp_path / "numbers.txt"
    path.write_text(text, encoding="utf-8")
    assert discovery.candidates.reads_digits_one_by_one(tokenizer)  # SmolLM2: ' ', '1', '9', '6', '0', 's'
    found = td.discover(str(path), min_count=1)
    reason = discovery.candidates.DIGITS_REASON
    assert " Krankenwagen" in found.words and not any(ch.isdigit() for w in found.words for ch in w)
    assert found.filtered[reason] == 2  # " 1960s" and " 19th", counted where discovery says why
    kept = td.discover(str(path), min_count=1, keep_numbers=True)
    assert {" 1960s", " 19th", " Krankenwagen"} <= set(kept.words) and reason not in kept.filtered
    # A frequency list names each entry it leaves out, with the reason.
    listed = tmp_path / "freq.tsv"
    listed.write_text("1960s\t50\nKrankenwagen\t3\n", encoding="utf-8")
    from_list = td.discover(frequency_list=listed, min_count=1)
    assert from_list.words == [" Krankenwagen"]
    assert [(r.entry, r.reason, r.line) for r in from_list.rejected] == [(" 1960s", reason, 1)]
    # A tokenizer that merges digits keeps them: the numbers are words like any other there.
    merging = AutoTokenizer.from_pretrained(trained["bpe"])
    assert not discovery.candidates.reads_digits_one_by_one(merging)
    assert " 1960s" in discovery.discover_words(merging, str(path), min_count=1).words


def test_cli_keep_numbers_is_for_discovered_candidates(tmp_path):
    proc = cli_probe("adapt", "--words", "Krankenwagen", "--keep-numbers", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "--keep-numbers applies to discovered candidates" in error_line(proc)
