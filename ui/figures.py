"""Plotly figure builders. Inputs are plain Python data from tokdist_core; no tensor math here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from tokdist_core import METHOD_NAMES, REGISTRY, StepRecord

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


SET_COLOURS = {"train": "#0d9488", "heldout": "#d97706"}  # teal: learned from; amber: kept aside
SET_NAMES = {"train": "training snippet", "heldout": "held-out snippet"}


def snippet_loss_figure(entries: Sequence[Mapping], means: Mapping[str, float | None], word: str,
                        method: str) -> go.Figure:
    """One bar per snippet (entries in the order shown: worst first), coloured by set, with the two
    position-weighted averages as dashed lines. Entry keys: id, set, loss, positions, preview."""
    if not entries:
        return empty_figure("Press 'Inspect snippets': one bar per snippet appears here.")
    order = [e["id"] for e in entries]
    fig = go.Figure()
    for part in ("train", "heldout"):
        mine = [e for e in entries if e["set"] == part]
        if not mine:
            continue
        fig.add_trace(go.Bar(
            x=[e["id"] for e in mine], y=[e["loss"] for e in mine], name=f"{SET_NAMES[part]}s",
            marker={"color": SET_COLOURS[part]},
            customdata=[[e["positions"], e["preview"]] for e in mine],
            hovertemplate="%{x}: loss %{y:.4g} over %{customdata[0]} positions<br>%{customdata[1]}<extra></extra>",
        ))
    for part, label in (("train", "training average"), ("heldout", "held-out average")):
        value = means.get(part)
        if value is not None:
            fig.add_hline(y=value, line={"color": SET_COLOURS[part], "dash": "dash", "width": 2},
                          annotation_text=f"{label} {value:.4g}", annotation_position="top right",
                          annotation_font={"color": SET_COLOURS[part], "size": 12})
    fig.update_xaxes(categoryorder="array", categoryarray=order, tickangle=-45 if len(order) > 12 else 0)
    fig.update_yaxes(rangemode="tozero")
    fig = _layout(fig, f"Loss per snippet of {word.strip()!r} with {method_label(method)}, worst first",
                  "snippet (worst on the left)", "loss (lower is better)", height=380)
    fig.update_layout(bargap=0.25, legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    return fig


def _min_cos(curves: Mapping[str, Sequence[Mapping]]) -> float:
    return min((r["cosine"] for rows in curves.values() for r in rows), default=0.0)


def _ordered(mapping: Mapping[str, object]) -> list[str]:
    known = [m for m in METHOD_NAMES if m in mapping]
    return known + [m for m in mapping if m not in known]
