"""Plotly figure builders. Inputs are plain Python data from tokdist_core; no tensor math here."""

from __future__ import annotations

import math
from bisect import bisect_right
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


def word_losses(histories: Mapping[str, Sequence[StepRecord]], word: str) -> dict[str, dict[int, float]]:
    """Per method, step -> this word's training loss at that step (the steps where it had a batch)."""
    return {m: {r.step: r.word_losses[word] for r in records if word in r.word_losses}
            for m, records in histories.items()}


def replay_figure(replay: Mapping, histories: Mapping[str, Sequence[StepRecord]], word: str) -> go.Figure:
    """Compare's embedding map with each trained method's path (left) beside the word's loss and the row's
    distance from its start (right), with a slider over the recorded steps that moves a marker along every
    path and curve. The figure opens at the last step (the final rows), zoomed on the paths; buttons switch
    to the whole map.

    The slider restyles traces (no plotly frames: Gradio's Plot drops them); the Replay tab's ▶ Play button
    steps through the same slider positions in the browser.
    """
    paths = replay.get("paths") or {}
    if not paths:
        return empty_figure("Train a method that learns (e.g. Token Distillation), then press 'Replay training'.")
    methods = list(paths)  # training order: the registry's
    losses = word_losses(histories, word)
    fig = make_subplots(rows=2, cols=2, column_widths=[0.56, 0.44], horizontal_spacing=0.09, vertical_spacing=0.16,
                        specs=[[{"rowspan": 2}, {}], [None, {}]],
                        subplot_titles=("Embedding map (as in Compare)", "Training loss of this word",
                                        "How far the row is from its start (full space)"))
    for trace in pca_figure(replay["points"], word).data:  # the Compare map, trace for trace
        fig.add_trace(trace, row=1, col=1)
    for m in methods:
        _add_static_replay_traces(fig, m, paths[m], losses.get(m, {}))
    frame_steps = sorted({s for m in methods for s in paths[m]["steps"]})
    every_loss = [v for m in methods for v in losses.get(m, {}).values()] or [1.0]
    loss_range = _padded_log_range(min(every_loss), max(every_loss))
    top_distance = max(max(paths[m]["distance_from_start"]) for m in methods) or 1.0

    def positions(step: int) -> tuple[list, list]:
        """x and y of every moving trace after `step`: map, loss and distance markers, then two step lines."""
        xs, ys = [], []
        points = {m: max(bisect_right(paths[m]["steps"], step) - 1, 0) for m in methods}
        for m in methods:
            xs.append([paths[m]["x"][points[m]]])
            ys.append([paths[m]["y"][points[m]]])
        for m in methods:
            loss = losses.get(m, {}).get(step)
            xs.append([step if loss is not None else None])
            ys.append([loss])
        for m in methods:
            xs.append([paths[m]["steps"][points[m]]])
            ys.append([paths[m]["distance_from_start"][points[m]]])
        xs += [[step, step], [step, step]]
        ys += [[10 ** loss_range[0], 10 ** loss_range[1]], [0, top_distance * 1.08]]
        return xs, ys

    first_moving = len(fig.data)
    _add_moving_replay_traces(fig, methods, *positions(frame_steps[-1]))
    moving = list(range(first_moving, len(fig.data)))
    slider_steps = [{"method": "restyle", "label": str(step), "args": [dict(zip(("x", "y"), positions(step))), moving]}
                    for step in frame_steps]
    _replay_axes(fig, replay, frame_steps[-1], loss_range, top_distance)
    _layout(fig, f"Training replay for {word.strip()!r}", "PC 1", "PC 2", height=700)
    fig.update_layout(
        margin={"l": 60, "r": 20, "t": 90, "b": 150},
        legend={"orientation": "h", "x": 0.0, "y": -0.3, "yanchor": "top", "font": {"size": 11}},
        sliders=[{"active": len(slider_steps) - 1, "steps": slider_steps, "x": 0.0, "len": 1.0, "y": -0.08,
                  "yanchor": "top", "pad": {"t": 10, "b": 0}, "ticklen": 4, "font": {"size": 10},
                  "currentvalue": {"prefix": "after training step ", "font": {"size": 13}}}],
    )
    return fig


def _add_static_replay_traces(fig: go.Figure, m: str, path: Mapping, losses: Mapping[int, float]) -> None:
    """One method's path on the map, its loss curve and its distance-from-start curve."""
    fig.add_trace(go.Scatter(
        x=path["x"], y=path["y"], mode="lines+markers", name=f"path of {method_label(m)}", legendgroup=m,
        line={"color": colour(m), "width": 1.5, "dash": "dot"}, marker={"size": 4, "color": colour(m)},
        customdata=path["steps"], hovertemplate=f"{method_label(m)}<br>after step %{{customdata}}<extra></extra>",
    ), row=1, col=1)
    steps = sorted(losses)
    style = "lines+markers" if len(steps) < 30 else "lines"
    fig.add_trace(go.Scatter(
        x=steps, y=[losses[s] for s in steps], mode=style, legendgroup=m, showlegend=False,
        line={"color": colour(m), "width": 2}, marker={"size": 4},
        hovertemplate=f"{method_label(m)}<br>step %{{x}}<br>loss %{{y:.4g}}<extra></extra>",
    ), row=1, col=2)
    fig.add_trace(go.Scatter(
        x=path["steps"], y=path["distance_from_start"], mode=style, legendgroup=m, showlegend=False,
        line={"color": colour(m), "width": 2}, marker={"size": 4},
        hovertemplate=f"{method_label(m)}<br>after step %{{x}}<br>distance %{{y:.3g}}<extra></extra>",
    ), row=2, col=2)


def _add_moving_replay_traces(fig: go.Figure, methods: Sequence[str], xs: list, ys: list) -> None:
    """The traces the slider moves, in the order `positions` gives them."""
    n = len(methods)
    for i, m in enumerate(methods):
        fig.add_trace(go.Scatter(
            x=xs[i], y=ys[i], mode="markers", legendgroup=m, showlegend=False,
            marker={"size": 15, "color": colour(m), "line": {"width": 2, "color": ORIGINAL_COLOUR}},
            hovertemplate=f"{method_label(m)}: the row at the chosen step<extra></extra>",
        ), row=1, col=1)
    for k, (row, what) in enumerate(((1, "loss"), (2, "distance"))):
        for i, m in enumerate(methods):
            j = (k + 1) * n + i
            fig.add_trace(go.Scatter(
                x=xs[j], y=ys[j], mode="markers", legendgroup=m, showlegend=False,
                marker={"size": 11, "color": colour(m), "line": {"width": 2, "color": ORIGINAL_COLOUR}},
                hovertemplate=f"{method_label(m)}<br>step %{{x}}<br>{what} %{{y:.4g}}<extra></extra>",
            ), row=row, col=2)
    for row, j in ((1, 3 * n), (2, 3 * n + 1)):
        fig.add_trace(go.Scatter(x=xs[j], y=ys[j], mode="lines", showlegend=False, hoverinfo="skip",
                                 line={"color": "#6b7280", "width": 1.5, "dash": "dash"}), row=row, col=2)


def _padded_log_range(low: float, high: float) -> list[float]:
    """A log axis range (in decades) around [low, high], fixed so the curve does not jump while playing."""
    lo, hi = math.log10(low), math.log10(high)
    pad = max(0.08 * (hi - lo), 0.05)
    return [lo - pad, hi + pad]


def _box(xs: Sequence[float], ys: Sequence[float], pad: float, floor: float = 0.0) -> tuple[list, list]:
    """Axis ranges around the points, padded by `pad` of the larger extent (at least `floor`)."""
    extent = max(max(xs) - min(xs), max(ys) - min(ys), floor)
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    half = extent * (0.5 + pad)
    return [cx - half, cx + half], [cy - half, cy + half]


def _replay_axes(fig: go.Figure, replay: Mapping, last_step: int, loss_range: list[float], top_distance: float
                 ) -> None:
    """Fixed ranges (nothing jumps while playing) and the map's two views: the paths up close, the whole map."""
    paths = replay["paths"].values()
    path_x = [v for p in paths for v in p["x"]]
    path_y = [v for p in paths for v in p["y"]]
    all_x = [p["x"] for p in replay["points"]] + path_x
    all_y = [p["y"] for p in replay["points"]] + path_y
    whole_x, whole_y = _box(all_x, all_y, 0.06)
    # Up close: the paths' box, but never less than 1.5 % of the whole map (a row that barely moved).
    near_x, near_y = _box(path_x, path_y, 0.25, floor=0.015 * (whole_x[1] - whole_x[0]))
    fig.update_xaxes(title_text="PC 1", zeroline=False, range=near_x, row=1, col=1)
    fig.update_yaxes(title_text="PC 2", zeroline=False, range=near_y, row=1, col=1)
    steps_range = [-0.04 * max(last_step, 1) - 0.3, last_step + 0.04 * max(last_step, 1) + 0.3]
    for row in (1, 2):
        fig.update_xaxes(range=steps_range, dtick=1 if last_step <= 12 else None, row=row, col=2)
    fig.update_xaxes(title_text="training step (0 = the start)", row=2, col=2)
    fig.update_yaxes(title_text="loss (log)", type="log", tickformat=".2~g", dtick="D2", range=loss_range,
                     row=1, col=2)
    fig.update_yaxes(title_text="distance", range=[-0.04 * top_distance, top_distance * 1.12], row=2, col=2)
    fig.update_layout(updatemenus=[{
        "type": "buttons", "direction": "right", "x": 0.56, "xanchor": "right", "y": 1.005, "yanchor": "bottom",
        "showactive": True, "active": 0, "pad": {"r": 4, "t": 0}, "font": {"size": 11},
        "buttons": [
            {"label": "Up close: the paths", "method": "relayout",
             "args": [{"xaxis.range": near_x, "yaxis.range": near_y}]},
            {"label": "Whole map", "method": "relayout", "args": [{"xaxis.range": whole_x, "yaxis.range": whole_y}]},
        ],
    }])


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
