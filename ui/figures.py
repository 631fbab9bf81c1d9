"""Plotly figure builders. Inputs are plain Python data from tokdist_core; no tensor math here."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

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


def word_losses(histories: Mapping[str, Sequence[StepRecord]], word: str) -> dict[str, dict[int, float]]:
    """Per method, step -> this word's training loss at that step (the steps where it had a batch)."""
    return {m: {r.step: r.word_losses[word] for r in records if word in r.word_losses}
            for m, records in histories.items()}


def replay_figure(replay: Mapping, histories: Mapping[str, Sequence[StepRecord]], word: str) -> go.Figure:
    """Compare's embedding map with each trained method's path (left) beside the word's loss curves
    (right), and a slider over the recorded steps that moves a marker along every path and a marker plus a
    line over the loss curves. The figure opens at the last step (the final rows).

    The slider restyles traces (no plotly frames: Gradio's Plot drops them); the Replay tab's ▶ Play button
    steps through the same slider positions in the browser.
    """
    paths = replay.get("paths") or {}
    if not paths:
        return empty_figure("Train a method that learns (e.g. Token Distillation), then press 'Replay training'.")
    methods = _ordered(paths)
    losses = word_losses(histories, word)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.56, 0.44], horizontal_spacing=0.09,
                        subplot_titles=("Embedding map (the same PCA as Compare)", "Training loss of this word"))
    for trace in pca_figure(replay["points"], word).data:  # the Compare map, trace for trace
        fig.add_trace(trace, row=1, col=1)
    for m in methods:
        path = paths[m]
        fig.add_trace(go.Scatter(
            x=path["x"], y=path["y"], mode="lines+markers", name=f"path of {method_label(m)}", legendgroup=m,
            line={"color": colour(m), "width": 1.5, "dash": "dot"}, marker={"size": 4, "color": colour(m)},
            customdata=path["steps"], hovertemplate=f"{method_label(m)}<br>after step %{{customdata}}<extra></extra>",
        ), row=1, col=1)
        steps = sorted(losses.get(m, {}))
        fig.add_trace(go.Scatter(
            x=steps, y=[losses[m][s] for s in steps], mode="lines+markers" if len(steps) < 30 else "lines",
            name=f"loss of {method_label(m)}", legendgroup=m, showlegend=False,
            line={"color": colour(m), "width": 2}, marker={"size": 4},
            hovertemplate=f"{method_label(m)}<br>step %{{x}}<br>loss %{{y:.4g}}<extra></extra>",
        ), row=1, col=2)
    frame_steps = sorted({s for m in methods for s in paths[m]["steps"]})
    every_loss = [v for m in methods for v in losses.get(m, {}).values()]
    low, high = (min(every_loss), max(every_loss)) if every_loss else (1.0, 1.0)

    def positions(step: int) -> tuple[list, list]:
        """x and y of every moving trace after `step`: map markers, loss markers, then the step line."""
        xs, ys = [], []
        for m in methods:
            k = max(bisect_right(paths[m]["steps"], step) - 1, 0)
            xs.append([paths[m]["x"][k]])
            ys.append([paths[m]["y"][k]])
        for m in methods:
            loss = losses.get(m, {}).get(step)
            xs.append([step if loss is not None else None])
            ys.append([loss])
        xs.append([step, step])
        ys.append([low, high])
        return xs, ys

    first_moving = len(fig.data)
    last_x, last_y = positions(frame_steps[-1])
    for i, m in enumerate(methods):
        fig.add_trace(go.Scatter(
            x=last_x[i], y=last_y[i], mode="markers", name=f"{method_label(m)} now", legendgroup=m,
            showlegend=False, marker={"size": 15, "color": colour(m), "line": {"width": 2, "color": "#111827"}},
            hovertemplate=f"{method_label(m)}: the row at the chosen step<extra></extra>",
        ), row=1, col=1)
    for i, m in enumerate(methods):
        fig.add_trace(go.Scatter(
            x=last_x[len(methods) + i], y=last_y[len(methods) + i], mode="markers", legendgroup=m, showlegend=False,
            marker={"size": 11, "color": colour(m), "line": {"width": 2, "color": "#111827"}},
            hovertemplate=f"{method_label(m)}<br>step %{{x}}<br>loss %{{y:.4g}}<extra></extra>",
        ), row=1, col=2)
    fig.add_trace(go.Scatter(x=last_x[-1], y=last_y[-1], mode="lines", showlegend=False, hoverinfo="skip",
                             line={"color": "#6b7280", "width": 1.5, "dash": "dash"}), row=1, col=2)
    moving = list(range(first_moving, len(fig.data)))
    slider_steps = []
    for step in frame_steps:
        xs, ys = positions(step)
        slider_steps.append({"method": "restyle", "label": str(step), "args": [{"x": xs, "y": ys}, moving]})
    fig.update_layout(sliders=[{
        "active": len(slider_steps) - 1, "steps": slider_steps, "x": 0.0, "len": 1.0, "y": -0.1,
        "yanchor": "top", "pad": {"t": 10, "b": 0},
        "currentvalue": {"prefix": "after training step ", "font": {"size": 13}},
        "ticklen": 4, "font": {"size": 10},
    }])
    fig.update_xaxes(title_text="PC 1", zeroline=False, row=1, col=1)
    fig.update_yaxes(title_text="PC 2", zeroline=False, row=1, col=1)
    fig.update_xaxes(title_text="training step (0 = the start)", rangemode="tozero", row=1, col=2)
    fig.update_yaxes(title_text="loss (log scale)", type="log", tickformat=".2~g", dtick="D2", row=1, col=2)
    if frame_steps[-1] <= 12:
        fig.update_xaxes(dtick=1, row=1, col=2)
    _layout(fig, f"Training replay for {word.strip()!r}", "", "", height=640)
    fig.update_layout(margin={"l": 60, "r": 20, "t": 70, "b": 150}, xaxis_title="PC 1", yaxis_title="PC 2",
                      legend={"orientation": "h", "x": 0.0, "y": -0.42, "yanchor": "top", "font": {"size": 11}})
    return fig


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


def _min_cos(curves: Mapping[str, Sequence[Mapping]]) -> float:
    return min((r["cosine"] for rows in curves.values() for r in rows), default=0.0)


def _ordered(mapping: Mapping[str, object]) -> list[str]:
    known = [m for m in METHOD_NAMES if m in mapping]
    return known + [m for m in mapping if m not in known]
