"""How a snippet is shown: decoded to text people read, with the word highlighted or trimmed around it."""

from __future__ import annotations

from tokdist_core import Snippet

from . import html as H

PREVIEW_CHARS = 90


def _decode(tokenizer, ids) -> str:
    # Generated snippets start with the BOS token; people should see text, not "<|im_start|>".
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def snippet_html(tokenizer, snip: Snippet) -> str:
    return H.highlight_snippet(_decode(tokenizer, snip.prefix), _decode(tokenizer, snip.word_ids),
                               _decode(tokenizer, snip.suffix))


def snippet_text(tokenizer, snip: Snippet) -> str:
    return _decode(tokenizer, snip.token_ids)


def snippet_preview(tokenizer, snip: Snippet) -> str:
    """About PREVIEW_CHARS characters of the snippet around the word (for hover text)."""
    text = snippet_text(tokenizer, snip)
    before = _decode(tokenizer, snip.prefix)
    start = max(0, len(before) - PREVIEW_CHARS // 2)
    piece = text[start:start + PREVIEW_CHARS].replace("\n", " ")
    return ("…" if start else "") + piece + ("…" if start + PREVIEW_CHARS < len(text) else "")
