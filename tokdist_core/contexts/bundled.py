"""The bundled corpus: English news and Wikipedia text shipped as test data inside the ``gensim`` wheel.

The files are read straight from the installed wheel (gensim itself is never imported): the Lee corpora
one document per article, the Wikipedia dump excerpt stripped of wikitext, one document per paragraph.
"""

from __future__ import annotations

import bz2
import importlib.metadata
import re
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

from .sources import RE_PARAGRAPHS, CorpusError

GENSIM_VERSION = "4.4.0"
GENSIM_HINT = f"pip install --no-deps gensim=={GENSIM_VERSION}"
_GENSIM_DATA = "gensim/test/test_data/"
_BUNDLED_FILES: dict[str, str] = {
    "lee_background": "lee_background.cor",
    "lee": "lee.cor",
    "enwiki": "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
}
BUNDLED_SOURCES: dict[str, str] = {
    "bundled:lee_background": "Lee background corpus: 300 Australian news articles, one document per article.",
    "bundled:lee": "Lee corpus: 50 Australian news articles, one document per article.",
    "bundled:enwiki": "106 English Wikipedia articles (2016 dump excerpt), wikitext stripped, one document per paragraph.",
}


def _gensim_file(name: str) -> Path:
    try:
        dist = importlib.metadata.distribution("gensim")
    except importlib.metadata.PackageNotFoundError as exc:
        raise CorpusError(
            f"The bundled corpus is read from the gensim wheel's test data, but gensim is not installed. "
            f"Install it with: {GENSIM_HINT}"
        ) from exc
    path = Path(str(dist.locate_file(_GENSIM_DATA + name)))
    if not path.is_file():
        raise CorpusError(
            f"gensim {dist.version} is installed but lacks its test data file {name!r}; reinstall with: {GENSIM_HINT}"
        )
    return path


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _read_lee(path: Path) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [doc for doc in (_collapse(line) for line in fh) if doc]


_WIKI_DROP_TAGS = {
    "ref", "references", "table", "gallery", "math", "timeline", "score", "syntaxhighlight", "source",
    "imagemap", "chem", "hiero", "graph", "noinclude", "includeonly", "nowiki", "pre", "code", "sup", "sub",
}  # fmt: skip
_WIKI_DROP_LINKS = ("file:", "image:", "category:", "media:")
_RE_COMMENT = re.compile(r"<!--.*?-->", re.S)
_RE_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref\s*>", re.S | re.I)
_RE_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)  # innermost table first; looped
_RE_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")  # innermost template; looped
_RE_BRACKET_LINK = re.compile(r"\[\[(?:[^\[\]]|\[[^\[\]]*\])*\]\]")
_RE_HTML = re.compile(r"</?[a-zA-Z][^<>]*>")
_RE_CAPTION_LINE = re.compile(
    r"^\s*(?:thumb|thumbnail|frame|frameless|left|right|center|upright|\d+px)\b[^\n]*\|", re.M
)
_RE_TABLE_LINE = re.compile(r"^\s*(?:\{\||\|\}|\|-|\||!)[^\n]*$", re.M)
_MIN_PARAGRAPH_CHARS = 80
_WIKI_LEFTOVERS = ("{{", "}}", "[[", "]]", "{|", "|}", "<ref", "</ref", "thumb|")


def _loop_sub(pattern: re.Pattern[str], text: str, repl: str = "") -> str:
    # Nested constructs: remove innermost first until nothing changes.
    while True:
        new = pattern.sub(repl, text)
        if new == text:
            return new
        text = new


def _clean_wikitext(raw: str) -> list[str]:
    """Plain-text paragraphs of one article: markup, references, tables, templates and media removed."""
    import mwparserfromhell
    from mwparserfromhell.nodes import Heading, Tag, Template, Wikilink

    text = _RE_COMMENT.sub("", raw)
    text = _RE_REF.sub("", text)
    text = _loop_sub(_RE_TABLE, text)
    code = mwparserfromhell.parse(text)
    parts: list[str] = []
    for node in code.nodes:
        # Top-level filter; strip_code handles the rest, the regexes below catch what slips through.
        if isinstance(node, (Template, Heading)):
            continue
        if isinstance(node, Tag) and str(node.tag).strip().lower() in _WIKI_DROP_TAGS:
            continue
        if isinstance(node, Wikilink):
            title = str(node.title).strip().lower()
            if title.startswith(_WIKI_DROP_LINKS) or re.match(r"^[a-z]{2,3}(-[a-z]+)?:", title):
                continue  # media, categories and interlanguage links carry no running text
        stripped = node.__strip__(normalize=True, collapse=True, keep_template_params=False)
        if stripped:
            parts.append(str(stripped))
    text = "".join(parts)
    text = _loop_sub(_RE_TEMPLATE, text)
    text = _RE_BRACKET_LINK.sub("", text)  # leftover [[Category:...]] / [[File:...]]
    text = _RE_HTML.sub("", text)
    text = _RE_CAPTION_LINE.sub("", text)
    text = _RE_TABLE_LINE.sub("", text)
    text = text.replace("'''", "").replace("''", "")
    paragraphs = []
    for block in RE_PARAGRAPHS.split(text):
        para = _collapse(block)
        # Short blocks are headings, list stubs or leftovers; real prose paragraphs are longer.
        if len(para) < _MIN_PARAGRAPH_CHARS or " " not in para or para.startswith(("|", "!", "{")):
            continue
        if any(mark in para for mark in _WIKI_LEFTOVERS):
            continue  # unbalanced markup the parser could not strip: drop the paragraph, not half of it
        paragraphs.append(para)
    return paragraphs


def _read_enwiki(path: Path) -> list[str]:
    docs: list[str] = []
    with bz2.open(path, "rb") as fh:
        for _event, elem in ET.iterparse(fh, events=("end",)):
            if elem.tag.rsplit("}", 1)[-1] != "page":
                continue
            ns = elem.find("{*}ns")
            text = elem.find("{*}revision/{*}text")
            is_article = ns is None or (ns.text or "0").strip() == "0"
            raw = text.text if text is not None and text.text else ""
            is_redirect = elem.find("{*}redirect") is not None or raw.lstrip().lower().startswith("#redirect")
            if is_article and raw and not is_redirect:
                docs.extend(_clean_wikitext(raw))
            elem.clear()  # keep memory flat while streaming the dump
    return docs


@lru_cache(maxsize=1)
def bundled_corpus() -> tuple[tuple[str, str], ...]:
    """Parsed bundled corpus, cached in memory (wikitext stripping takes a few seconds once)."""
    docs: list[tuple[str, str]] = []
    for key, name in _BUNDLED_FILES.items():
        path = _gensim_file(name)
        texts = _read_enwiki(path) if name.endswith(".bz2") else _read_lee(path)
        docs.extend((f"bundled:{key}", t) for t in texts)
    return tuple(docs)


def check_bundled() -> None:
    """Raise CorpusError, with the install hint, unless every bundled file is installed."""
    for name in _BUNDLED_FILES.values():
        _gensim_file(name)


def bundled_available() -> bool:
    """True when the gensim wheel with its test data is installed."""
    try:
        check_bundled()
    except CorpusError:
        return False
    return True
