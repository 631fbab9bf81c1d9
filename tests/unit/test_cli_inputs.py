"""Command-line mistakes are reported at once as one `error: ...` line: no traceback, no model loaded."""

from __future__ import annotations

import pytest

from tests.helpers import cli_probe, error_line, make_tiny
from tokdist_core import cli
from tokdist_core.api import TokenDistillation
from tokdist_core.cli import common

# -- 1. --words-file ------------------------------------------------------------------------------

@pytest.mark.parametrize("content, kind", [
    ("Agassi\nAndorra\n".encode("utf-16"), "UTF-16"),  # with BOM
    ("Agassi\nAndorra\n".encode("utf-16-le"), "UTF-16"),  # no BOM
    ("Agassi\nAndorra\n".encode("utf-16-be"), "UTF-16"),  # no BOM, big-endian
    ("Agassi\n".encode("utf-32"), "UTF-32"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00>\x00", "binary"),
    ("Agassi\nKrankenwägen\n".encode("latin-1"), "not UTF-8"),
])
def test_words_file_that_is_not_utf8_text_is_named(tmp_path, content, kind):
    path = tmp_path / "words.txt"
    path.write_bytes(content)
    line = error_line(cli_probe("split", "--words-file", str(path)))
    assert str(path) in line and kind in line and "save it as UTF-8 text" in line, line


def test_words_file_folder_and_missing_file(tmp_path):
    line = error_line(cli_probe("split", "--words-file", str(tmp_path)))
    assert "is a folder" in line and "does not exist" not in line, line
    line = error_line(cli_probe("split", "--words-file", str(tmp_path / "nope.txt")))
    assert "nope.txt does not exist" in line, line


def test_words_file_with_utf8_bom_reads_like_plain_utf8(tmp_path):
    path = tmp_path / "words.txt"
    path.write_bytes("\ufeffAndorra\r\nKrankenwägen, Agassi\n\n".encode())
    assert common.read_words_file(str(path)) == ["Andorra", "Krankenwägen, Agassi", ""]
    args = cli.build_parser().parse_args(["split", "--words-file", str(path), "--words", "Tarkovsky,"])
    assert common.words_of(args) == ["Tarkovsky", "Andorra", "Krankenwägen", " Agassi"]


# -- 2. output paths are checked before any work ----------------------------------------------------

def test_json_into_missing_folder_fails_before_loading_the_model(tmp_path):
    target = tmp_path / "missing" / "report.json"
    line = error_line(cli_probe("compare", "--words", "Andorra", "--json", str(target)))
    assert str(tmp_path / "missing") in line and "does not exist" in line, line
    line = error_line(cli_probe("compare", "--words", "Andorra", "--json", str(tmp_path)))
    assert "is a folder" in line, line
    (tmp_path / "file").write_text("x")
    line = error_line(cli_probe("compare", "--words", "Andorra", "--json", str(tmp_path / "file" / "r.json")))
    assert "is a file, not a folder" in line, line


def test_out_onto_existing_file_fails_before_loading_the_model(tmp_path):
    existing = tmp_path / "model.bin"
    existing.write_bytes(b"x")
    line = error_line(cli_probe("distill", "--words", "Andorra", "--out", str(existing)))
    assert str(existing) in line and "existing file" in line, line
    line = error_line(cli_probe("distill", "--words", "Andorra", "--out", str(existing / "sub")))
    assert "is a file, not a folder" in line, line
    line = error_line(cli_probe("distill", "--words", "Andorra", "--out", ""))
    assert "--out needs a folder name" in line, line


def test_out_folder_that_exists_or_can_be_created_is_accepted(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text("{}")
    common.check_out_folder(str(tmp_path / "old"))  # a folder (distill also asks it to be an earlier export)
    common.check_out_folder(str(tmp_path / "new" / "nested"))  # created with its parents when saving


def test_out_that_cannot_be_created_is_found_before_loading_the_model():
    line = error_line(cli_probe("distill", "--words", "Andorra", "--out", "/proc/tokdist/out"))  # /proc takes no folders
    assert "cannot write in folder /proc" in line, line


@pytest.mark.parametrize("command", ["distill", "adapt"])
def test_unknown_export_formats_are_refused_up_front(tmp_path, command):
    proc = cli_probe(command, "--words", "Andorra", "--out", str(tmp_path / "o"), "--formats", "hf,gguf2")
    assert proc.returncode == 2 and "unknown export format(s) gguf2; choose from hf, rows, peft, gguf" in proc.stderr
    assert "NO_TORCH" in proc.stderr and not (tmp_path / "o").exists()


def test_distill_never_replaces_a_folder_of_other_files(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    line = error_line(cli_probe("distill", "--words", "Andorra", "--out", str(mine)))
    assert str(mine) in line and "not an earlier export" in line, line
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("command", ["distill", "compare"])
def test_empty_or_binary_data_files_are_refused_before_loading_the_model(tmp_path, command):
    empty, binary = tmp_path / "empty.txt", tmp_path / "binary.txt"
    empty.write_text("")
    binary.write_bytes(b"\x00\x01 text \x00" * 100)
    out = ["--out", str(tmp_path / "o")] if command == "distill" else []
    line = error_line(cli_probe(command, "--words", "Andorra", "--data", str(empty), *out))
    assert "The corpus is empty" in line and str(empty) in line, line
    line = error_line(cli_probe(command, "--words", "Andorra", "--data", str(binary), *out))
    assert "binary file" in line and str(binary) in line, line
    assert not (tmp_path / "o").exists()


# -- 3. no words ------------------------------------------------------------------------------------

@pytest.mark.parametrize("words", [[""], ["   "], [","], [" , ", ","], []])
def test_split_without_words_is_an_error(words):
    line = error_line(cli_probe("split", "--words", *words))
    assert "give at least one word" in line, line


# -- 4. counts and methods --------------------------------------------------------------------------

@pytest.mark.parametrize("command, flag, value, expected", [
    ("compare", "--heldout-per-token", "0", "compare evaluates every method on held-out snippets"),
    ("compare", "--heldout-per-token", "-3", "between 1 and 1000"),
    ("compare", "--snippets-per-token", "0", "between 1 and 1000"),
    ("distill", "--snippets-per-token", "-1", "between 1 and 1000"),
    ("distill", "--snippets-per-token", "1001", "between 1 and 1000"),
    ("compare", "--snippet-len", "0", "between 4 and 1024"),
    ("distill", "--snippet-len", "5000", "between 4 and 1024"),
    ("compare", "--snippets-per-token", "ten", "expected an integer"),
    ("distill", "--heldout-per-token", "5", "unrecognized arguments"),  # distill never evaluates
])
def test_counts_out_of_range_are_rejected_up_front(tmp_path, command, flag, value, expected):
    extra = ["--out", str(tmp_path / "out")] if command == "distill" else []
    line = error_line(cli_probe(command, "--words", "Andorra", flag, value, *extra))
    assert expected in line, line
    if flag != "--heldout-per-token" or command == "compare":
        assert flag in line, line
    assert not (tmp_path / "out").exists()


def test_missing_data_file_is_reported_before_loading_the_model(tmp_path):
    missing = tmp_path / "corpus.txt"
    line = error_line(cli_probe("distill", "--words", "Andorra", "--data", str(missing), "--out", str(tmp_path / "o")))
    assert str(missing) in line and "no such file or folder" in line, line
    line = error_line(cli_probe("compare", "--words", "Andorra", "--data", "bundled,"))
    assert "empty entry" in line, line


@pytest.mark.parametrize("methods, expected", [("", "at least one method"), (" , ", "at least one method"),
                                               ("tokdist,bogus", "unknown method 'bogus'")])
def test_compare_methods_are_checked_up_front(methods, expected):
    line = error_line(cli_probe("compare", "--words", "Andorra", "--methods", methods))
    assert expected in line, line


# -- 5. --help imports no torch ---------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["split", "--help"], ["distill", "--help"], ["compare", "--help"]])
def test_help_does_not_import_torch(argv):
    proc = cli_probe(*argv)
    assert proc.returncode == 0, proc.stderr
    assert "usage: tokdist" in proc.stdout
    assert "NO_TORCH" in proc.stderr, proc.stderr


def _actions(command: str) -> dict:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {a.dest: a for a in sub._actions}


def test_cli_takes_its_choices_and_limits_from_the_library():
    from tokdist_core import OUTPUT_POLICIES
    from tokdist_core.foundations import limits
    from tokdist_core.methods import METHOD_NAMES
    from tokdist_core.training import DistillationConfig, config_fields

    distill, compare = _actions("distill"), _actions("compare")
    assert distill["method"].choices == METHOD_NAMES
    assert compare["methods"].default == ",".join(METHOD_NAMES)
    assert distill["output_policy"].choices == OUTPUT_POLICIES
    assert distill["model"].default == limits.DEFAULT_MODEL
    # Each training flag takes default, bounds and help from its config field.
    defaults = DistillationConfig()
    for spec in config_fields():
        if spec.name in common.CONFIG_FLAGS:
            assert distill[spec.name].default == getattr(defaults, spec.name)
            assert spec.help in distill[spec.name].help
    assert distill["mixed_precision"].choices == limits.PRECISIONS
    # The library's bounds are the parser's: the largest value passes, one more is refused.
    parser = cli.build_parser()
    for flag, top in (("--snippets-per-token", limits.MAX_SNIPPETS_PER_TOKEN), ("--snippet-len", limits.MAX_SNIPPET_LEN)):
        args = parser.parse_args(["distill", "--words", "Andorra", "--out", "o", flag, str(top)])
        assert getattr(args, flag[2:].replace("-", "_")) == top
        with pytest.raises(SystemExit):
            parser.parse_args(["distill", "--words", "Andorra", "--out", "o", flag, str(top + 1)])
    with pytest.raises(SystemExit):
        parser.parse_args(["distill", "--words", "Andorra", "--out", "o", "--snippet-len", str(limits.MIN_SNIPPET_LEN - 1)])


def test_every_training_flag_has_help():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("split", "distill", "compare"):
        for action in subparsers[name]._actions:
            assert action.help, (name, action.option_strings)


# -- 6. library argument checks ---------------------------------------------------------------------

@pytest.fixture
def td(tokenizer, monkeypatch) -> TokenDistillation:
    td = TokenDistillation(make_tiny(tokenizer))

    def no_work(*_a, **_k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(td, "contexts", no_work)
    monkeypatch.setattr(td, "train", no_work)
    return td


def test_run_save_without_out_path_fails_before_any_work(td, tmp_path):
    with pytest.raises(ValueError, match="save=True needs out_path"):
        td.run(["Krankenwagen"], save=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="existing file"):
        td.run(["Krankenwagen"], save=True, out_path=tmp_path / "file")
    with pytest.raises(ValueError, match="no words given"):
        td.run([" ", ""])
    with pytest.raises(ValueError, match="output policy"):
        td.run(["Krankenwagen"], output_policy="bogus")


@pytest.mark.parametrize("words", [[], "", " , \n ,", ["", "  "]])
def test_compare_without_words_raises(td, words):
    with pytest.raises(ValueError, match="no words given"):
        td.compare(words, methods=["subword_mean"])


def test_compare_argument_checks_come_first(td):
    with pytest.raises(ValueError, match="heldout_per_token must be an integer of at least 1, got 0"):
        td.compare(["Krankenwagen"], methods=["subword_mean"], heldout_per_token=0)
    with pytest.raises(ValueError, match="choose at least one method"):
        td.compare(["Krankenwagen"], methods=[])
    with pytest.raises(ValueError, match="output policy"):
        td.compare(["Krankenwagen"], methods=["subword_mean"], output_policy="bogus")
    # Words that were given but cannot be added are still reported, not an error.
    report = td.compare(["the"], methods=["subword_mean"]).to_json()
    assert report["words"] == [] and "already a single token" in report["skipped"][0]["reason"]


# -- end to end with the bundled model ---------------------------------------------------------------


