"""Plotly figure builders. Inputs are plain Python data from tokdist_core; no tensor math here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tokdist_core import METHOD_NAMES, ORIGINAL_PIECES, REGISTRY, StepRecord

ORIGINAL_COLOUR = "#111827"  # the word read as its original pieces (methods' colours live in the registry)
WORD_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def method_label(name: str) -> str:
    method = REGISTRY.get(name)
    return method.label if method else name


def colour(name: str) -> str:
    if name in REGISTRY:
        return REGISTRY[name].colour
    if name == "original split":
        return ORIGINAL_COLOUR
    palette = ("#0891b2", "#65a30d", "#b91c1c", "#4338ca")
    return palette[hash(name) % len(palette)]


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 420) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 16}},
        xaxis_title=x,
        yaxis_title=y,
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "v", "font": {"size": 11}},
        template="plotly_white",
        hovermode="closest",
    )
    return fig


def empty_figure(message: str, height: int = 320) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": "#6b7280"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, template="plotly_white", margin={"l": 20, "r": 20, "t": 20, "b": 20})
    return fig


def loss_figure(histories: Mapping[str, Sequence[StepRecord]], words: Sequence[str],
                title: str = "Training loss per word and method") -> go.Figure:
    """One line per (method, word): colour = method, dash = word. Log-scale y."""
    if not any(histories.values()):
        return empty_figure("The loss curves appear here while training runs.")
    fig = go.Figure()
    for method in _ordered(histories):
        records = histories[method]
        for w_index, word in enumerate(words):
            xs = [r.step for r in records if word in r.word_losses]
            ys = [r.word_losses[word] for r in records if word in r.word_losses]
            if not xs:
                continue
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines+markers" if len(xs) < 30 else "lines",
                name=f"{method_label(method)} · {word.strip()}",
                legendgroup=method,
                line={"color": colour(method), "dash": WORD_DASHES[w_index % len(WORD_DASHES)], "width": 2},
                marker={"size": 5},
                hovertemplate=f"{method_label(method)}<br>{word.strip()}<br>step %{{x}}<br>loss %{{y:.4g}}<extra></extra>",
            ))
    # Plain decimal labels: the default log-axis minor labels ("2 3 … 9") confuse non-specialists.
    fig.update_yaxes(type="log", tickformat=".2~g", dtick="D2")
    if max((r.step for recs in histories.values() for r in recs), default=0) <= 12:
        fig.update_xaxes(dtick=1)  # whole steps only
    return _layout(fig, title, "training step", "loss (log scale)")


def pca_figure(points: Sequence[Mapping], word: str) -> go.Figure:
    """New rows (big markers) with the word's subword rows and their neighbours in a 2-D PCA."""
    if not points:
        return empty_figure("Train first: the PCA map of the embeddings appears here.")
    fig = go.Figure()
    new = [p for p in points if p["kind"] == "new row"]
    subs = [p for p in points if p["kind"] == "subword"]
    neigh = [p for p in points if p["kind"].startswith("neighbour")]
    if neigh:
        fig.add_trace(go.Scatter(
            x=[p["x"] for p in neigh], y=[p["y"] for p in neigh], mode="markers+text",
            text=[p["label"].strip() or repr(p["label"]) for p in neigh], textposition="top center",
            textfont={"size": 10, "color": "#6b7280"},
            marker={"size": 7, "color": "#d1d5db", "line": {"width": 1, "color": "#9ca3af"}},
            name="nearest existing tokens",
            hovertext=[f"{p['label']!r} ({p['kind']})" for p in neigh], hoverinfo="text",
        ))
    if subs:
        fig.add_trace(go.Scatter(
            x=[p["x"] for p in subs], y=[p["y"] for p in subs], mode="markers+text",
            text=[repr(p["label"]) for p in subs], textposition="bottom center",
            marker={"size": 11, "symbol": "square", "color": "#111827"},
            name="the word's subwords",
            hovertext=[f"subword {p['label']!r}" for p in subs], hoverinfo="text",
        ))
    for p in new:
        fig.add_trace(go.Scatter(
            x=[p["x"]], y=[p["y"]], mode="markers",
            marker={"size": 16, "symbol": "star", "color": colour(p["label"]), "line": {"width": 1, "color": "#111"}},
            name=f"new row: {method_label(p['label'])}",
            hovertext=f"{method_label(p['label'])}: new row for {word.strip()!r}", hoverinfo="text",
        ))
    fig.update_xaxes(zeroline=False)
    fig.update_yaxes(zeroline=False)
    return _layout(fig, f"Embedding map for {word.strip()!r} (PCA of input rows)", "PC 1", "PC 2", height=480)


def lens_figure(curves: Mapping[str, Sequence[Mapping]], word: str) -> go.Figure:
    """Cosine between teacher (last subword) and student (new token) hidden states, per layer."""
    if not curves:
        return empty_figure("Train first, then pick a word to see the per-layer lens.")
    fig = go.Figure()
    for method in _ordered(curves):
        layers = curves[method]
        fig.add_trace(go.Scatter(
            x=[r["layer"] for r in layers], y=[r["cosine"] for r in layers], mode="lines+markers",
            name=method_label(method), line={"color": colour(method), "width": 2}, marker={"size": 5},
            hovertemplate=f"{method_label(method)}<br>layer %{{x}}<br>cosine %{{y:.3f}}<extra></extra>",
        ))
    fig.update_yaxes(range=[min(0.0, _min_cos(curves)) - 0.02, 1.02])
    return _layout(fig, f"How close the new token's state is to the original, layer by layer ({word.strip()!r})",
                   "layer (0 = embeddings)", "cosine similarity to the original")


def attention_figure(panels: Sequence[tuple[str, Mapping]], word: str) -> go.Figure:
    """Per layer, the % of attention that the positions after the word give to it: one line per method and a
    dashed black line for the original pieces; one panel per (title, attention report)."""
    panels = [(title, report) for title, report in panels if report]
    if not panels:
        return empty_figure("Train first, then press 'Look inside' to see where the later words look.")
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[title for title, _ in panels])
    top = 0.0
    for col, (_, report) in enumerate(panels, start=1):
        shares = report["shares"]
        sources = [ORIGINAL_PIECES] + _ordered({k: v for k, v in shares.items() if k != ORIGINAL_PIECES})
        for source in sources:
            part = shares[source]
            original = source == ORIGINAL_PIECES
            name = "original pieces (added up)" if original else method_label(source)
            ys = [100 * v for v in part["word"]]
            top = max(top, *ys)
            hover = [f"{name}<br>layer {layer}<br>to the word: {100 * w:.1f} %<br>to the words before it: "
                     f"{100 * p:.1f} %<br>to the words after it: {100 * later:.1f} %"
                     for layer, w, p, later in zip(report["layers"], part["word"], part["prefix"], part["later"])]
            fig.add_trace(go.Scatter(
                x=report["layers"], y=ys, mode="lines+markers", name=name, legendgroup=source, showlegend=col == 1,
                line={"color": ORIGINAL_COLOUR if original else colour(source), "width": 3 if original else 2,
                      "dash": "dash" if original else "solid"},
                marker={"size": 4}, hovertext=hover, hoverinfo="text",
            ), row=1, col=col)
    fig = _layout(fig, f"How much the words after {word.strip()!r} look at it, layer by layer", "layer",
                  "% of attention on the word")
    fig.update_xaxes(title_text="layer (1 = first block)")
    fig.update_yaxes(ticksuffix=" %", range=[0, max(5.0, top * 1.1)])
    fig.update_layout(margin={"l": 70, "r": 20, "t": 80, "b": 50})
    return fig


def savings_figure(rows: Sequence[Mapping], corpus_tokens: int) -> go.Figure:
    """Cumulative share of the corpus's tokens saved by the top N candidates (rows ranked by tokens saved)."""
    if not rows:
        return empty_figure("Find candidates first: the savings curve appears here.")
    ranks = [r["rank"] for r in rows]
    shares = [r["cumulative_saved_pct"] for r in rows]
    hover = [f"top {r['rank']} (adds {r['token'].strip()!r}, saves {r['tokens_saved']:,})<br>"
             f"{r['cumulative_saved_pct']:.2f} % of {corpus_tokens:,} tokens saved" for r in rows]
    fig = go.Figure(go.Scatter(
        x=ranks, y=shares, mode="lines+markers" if len(rows) <= 60 else "lines", name="top N",
        line={"color": "#ea580c", "width": 3, "shape": "hv"}, marker={"size": 5}, fill="tozeroy",
        fillcolor="rgba(234,88,12,.12)", hovertext=hover, hoverinfo="text",
    ))
    fig.update_yaxes(rangemode="tozero", ticksuffix=" %")
    fig.update_xaxes(range=[0.5, len(rows) + 0.5])
    fig = _layout(fig, "Corpus tokens saved by the top N new tokens", "top N candidates (new tokens added)",
                  "% of corpus tokens saved", height=360)
    fig.update_layout(showlegend=False, hovermode="x")
    return fig


def _min_cos(curves: Mapping[str, Sequence[Mapping]]) -> float:
    return min((r["cosine"] for rows in curves.values() for r in rows), default=0.0)


def _ordered(mapping: Mapping[str, object]) -> list[str]:
    known = [m for m in METHOD_NAMES if m in mapping]
    return known + [m for m in mapping if m not in known]
