"""Small HTML builders shared by the tabs. Every user-supplied string goes through `esc`."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

# Pastel backgrounds with dark text: readable in light and dark themes alike.
PIECE_COLOURS = ("#fde68a", "#bfdbfe", "#bbf7d0", "#fbcfe8", "#ddd6fe", "#fed7aa", "#a5f3fc", "#e9d5ff")


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def visible(text: str) -> str:
    """Show spaces and line breaks in token text (a leading space matters for tokens)."""
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def piece_chips(pieces: Sequence[str], ids: Sequence[int]) -> str:
    chips = []
    for i, (piece, tid) in enumerate(zip(pieces, ids)):
        colour = PIECE_COLOURS[i % len(PIECE_COLOURS)]
        chips.append(
            f'<span class="td-chip" style="background:{colour}">'
            f'<span class="td-chip-text">{esc(visible(piece))}</span>'
            f'<span class="td-chip-id">{int(tid)}</span></span>'
        )
    return "".join(chips)


def badge(text: str, kind: str = "info") -> str:
    return f'<span class="td-badge td-badge-{kind}">{esc(text)}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "td-table") -> str:
    """Cells are trusted HTML: callers escape their own text."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<div class="td-scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def progress_bar(fraction: float, label: str) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return (
        f'<div class="td-progress"><div class="td-progress-fill" style="width:{pct:.1f}%"></div>'
        f'<span class="td-progress-label">{esc(label)}</span></div>'
    )


def empty(message: str) -> str:
    return f'<div class="td-empty">{esc(message)}</div>'


def highlight_snippet(prefix: str, word: str, suffix: str, max_side: int = 160) -> str:
    """Snippet text with the word marked; long sides are trimmed with an ellipsis."""
    if len(prefix) > max_side:
        prefix = "…" + prefix[-max_side:]
    if len(suffix) > max_side:
        suffix = suffix[:max_side] + "…"
    return f"{esc(prefix)}<mark>{esc(word)}</mark>{esc(suffix)}"


CSS = """
.td-chip{display:inline-flex;flex-direction:column;align-items:center;margin:2px 3px;padding:3px 8px;
  border-radius:8px;color:#111827;font-family:ui-monospace,Menlo,monospace;line-height:1.2}
.td-chip-text{font-size:1.05em;white-space:pre}
.td-chip-id{font-size:.72em;opacity:.7}
.td-word-row{display:flex;flex-wrap:wrap;align-items:center;gap:10px;padding:8px 4px;
  border-bottom:1px solid rgba(128,128,128,.25)}
.td-word-name{min-width:9em;font-weight:600}
.td-badge{display:inline-block;padding:2px 8px;border-radius:999px;font-size:.85em;white-space:nowrap}
.td-badge-info{background:#dbeafe;color:#1e3a8a}
.td-badge-ok{background:#dcfce7;color:#14532d}
.td-badge-warn{background:#fef3c7;color:#78350f}
.td-badge-bad{background:#fee2e2;color:#7f1d1d}
.td-scroll{max-height:520px;overflow:auto;border-radius:8px}
.td-table{border-collapse:collapse;width:100%;font-size:.92em}
.td-table th{position:sticky;top:0;background:var(--background-fill-secondary,#f3f4f6);text-align:left;
  padding:6px 8px;border:none !important;border-bottom:2px solid rgba(128,128,128,.35) !important}
.td-table td{padding:5px 8px;border:none !important;border-bottom:1px solid rgba(128,128,128,.2) !important;
  vertical-align:top}
.td-table{border:none !important}
.td-table td.num{text-align:right;font-variant-numeric:tabular-nums}
.td-table mark{background:#fde68a;color:#111827;padding:0 2px;border-radius:3px}
.td-best{font-weight:700;color:#15803d}
.td-match{background:rgba(34,197,94,.18)}
.td-progress{position:relative;height:26px;border-radius:13px;background:rgba(128,128,128,.18);overflow:hidden}
.td-progress-fill{position:absolute;left:0;top:0;bottom:0;background:linear-gradient(90deg,#f97316,#fb923c);
  transition:width .3s}
.td-progress-label{position:relative;display:block;text-align:center;line-height:26px;font-size:.9em;font-weight:600}
.td-empty{padding:14px;border:1px dashed rgba(128,128,128,.45);border-radius:8px;opacity:.8}
.td-cards{display:flex;flex-wrap:wrap;gap:12px}
.td-card{flex:1 1 260px;border:1px solid rgba(128,128,128,.3);border-radius:10px;padding:10px 12px}
.td-card h4{margin:0 0 6px 0}
.td-card .td-gen{white-space:pre-wrap;font-family:ui-serif,Georgia,serif;line-height:1.45}
.td-card .td-meta{font-size:.82em;opacity:.75;margin-top:6px}
.td-side{display:flex;flex-wrap:wrap;gap:12px}
.td-side > div{flex:1 1 220px}
.td-banner{padding:10px 14px;border-radius:8px;background:#fee2e2;color:#7f1d1d;font-weight:600}
.td-help{font-size:.95em;opacity:.9}
.td-caption{font-size:.9em;opacity:.85;margin:-4px 4px 10px 4px}
.td-caption p{margin:0}
.td-ticks .wrap{max-height:220px;overflow-y:auto}
.td-nowrap{white-space:nowrap}
"""
