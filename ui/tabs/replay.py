"""Replay tab (/trajectory): each trained row's path through training on Compare's map, beside its loss."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr
import plotly.graph_objects as go

from tokdist_core import TokenDistillation, WordSplit

from ..components import html as H
from ..components import widgets as W
from ..components.figures import empty_figure, method_label, replay_figure, word_losses
from ..components.parsing import pick_split
from ..jobs import HEAVY, Job, answer_when_done, check_view_now
from ..runtime import Runtime, gpu, user_errors
from ..state import SessionState

INTRO = """
### 5 · Replay
Watch training happen. While a method trains, the app keeps a copy of the new row after every step (up to
100 evenly spaced steps). Here that row **walks across the same embedding map as in Compare**: it starts at
the average of the word's pieces and ends at the method's final row (its ★). The curves beside it show the
loss and how far the row has travelled at the same step. Press **▶ Play**, or drag the slider under the plot.
"""
CAPTION = """<small>**Left, the embedding map:** the same flat picture of the embedding space as in Compare (PCA
squeezes the hundreds of numbers in each token's row, 576 for SmolLM2, into 2). Black squares are the word's
original pieces, grey dots existing tokens close to a new row, ★ stars the final new rows. The dotted line is the
path one method's new row took while it trained: it starts at the average of the pieces (step 0, before any
training, where the Subword mean's star is) and ends on that method's star. The big circle is where the row was
after the step chosen on the slider. The map opens **up close** on the paths, because a row moves only a little on
this scale; **Whole map** shows all of it. **Top right, the loss** of this word for each method, step by step (lower
means the new token's internal states are closer to the original pieces'). Each step's loss is measured on that
step's snippets just before the row moves. **Bottom right, the distance** of the row from where it started,
measured with all of its numbers (the map shows only 2 directions). The dashed lines and circles mark the step on
the slider. **What to look for:** at first the row moves quickly and the loss falls fast; a good run then settles:
the distance levels off and the loss flattens low. A path that zig-zags while the loss jumps means the learning
rate is too high.</small>"""
PLAY_MS = 8_000  # one play-through lasts about this long, whatever the number of steps

# Client-side playback: step the figure's own slider (its steps restyle the moving traces), so nothing
# goes back to the server. Plotly is the global the page's Plot component loads.
PLAY_JS = f"""
() => {{
  const gd = document.querySelector('#replay-plot .js-plotly-plot');
  const Plotly = window.Plotly;
  if (!gd || !Plotly || !gd.layout || !gd.layout.sliders || !gd.layout.sliders.length) return;
  clearInterval(window.tdReplayTimer);
  const steps = gd.layout.sliders[0].steps;
  const full = gd._fullLayout && gd._fullLayout.sliders && gd._fullLayout.sliders[0];
  const active = full ? full.active : steps.length - 1;
  let k = active >= steps.length - 1 ? 0 : active + 1;
  const show = () => {{
    if (k >= steps.length) {{ clearInterval(window.tdReplayTimer); return; }}
    const [update, traces] = steps[k].args;
    Plotly.restyle(gd, update, traces);
    Plotly.relayout(gd, {{'sliders[0].active': k}});
    k += 1;
  }};
  show();
  window.tdReplayTimer = setInterval(show, Math.max(40, Math.min(400, {PLAY_MS} / steps.length)));
}}
"""
PAUSE_JS = "() => { clearInterval(window.tdReplayTimer); }"


@dataclass
class ReplayTab:
    word: gr.Dropdown
    button: gr.Button
    summary: gr.Markdown
    plot: gr.Plot
    play: gr.Button
    pause: gr.Button
    details: gr.JSON


def run_replay(rt: Runtime, word: str | None, state: SessionState, progress: gr.Progress | None = None
               ) -> Iterator[tuple]:
    """Check the request, then project the paths and draw in the server's job line (a generator handler).

    A view: it may wait behind this session's run, so the checks run again when its turn comes."""
    def checked() -> WordSplit:
        state.require_rows()
        split = pick_split(state, word)
        if not state.trajectories:
            raise gr.Error("None of the methods of the last run trains, so there is no path to replay: tick "
                           "Token Distillation (or NTP) in the Distill tab and press 'Train' again.")
        return split

    check_view_now(state, checked)
    td = rt.engine(state.model_name)

    def work(job: Job) -> tuple[go.Figure, str, dict]:  # noqa: ARG001 - a quick view: nothing to stop
        return replay_views(td, checked(), state)

    yield from answer_when_done(rt.jobs, state, "the training replay", work, len(OUTPUT_NAMES), progress, view=True)


OUTPUT_NAMES = ("plot", "summary", "details")


def replay_views(td: TokenDistillation, split: WordSplit, state: SessionState) -> tuple[go.Figure, str, dict]:
    trajectories = {m: t for m, t in state.trajectories.items() if split.word in t.words}
    trajectories.update(state.word_trajectories.get(split.word, {}))  # re-trained alone since the run
    replay = td.trajectory_map(list(state.rows.values()), trajectories, split.word)
    losses = word_losses({m: state.histories.get(m, []) for m in replay["paths"]}, split.word)
    lines = []
    for method in replay["paths"]:  # in training order, which is the registry's order
        path = replay["paths"][method]
        line = (f"**{method_label(method)}**: after {path['steps'][-1]} steps the row is "
                f"{path['distance_from_start'][-1]:.3g} away from where it started (the average of the pieces), "
                f"over a path {path['path_length']:.3g} long")
        loss = losses.get(method, {})
        if loss:
            first, last = min(loss), max(loss)
            line += f"; the loss went from {loss[first]:.3g} (step {first}) to {loss[last]:.3g} (step {last})"
        lines.append(line + ".")
    skipped = [method_label(m) for m in state.rows if m not in replay["paths"]]
    if skipped:
        lines.append(f"*Not trained, so only their final row (★) is on the map: {', '.join(skipped)}.*")
    if state.cancelled:
        lines.append(f"*The last run was stopped ({H.esc(state.cancelled)}); only finished methods are shown.*")
    details = {**replay, "losses": {m: [[s, v] for s, v in sorted(loss.items())] for m, loss in losses.items()}}
    return replay_figure(replay, state.histories, split.word), "\n\n".join(lines), details


def build(rt: Runtime) -> ReplayTab:  # noqa: ARG001
    gr.Markdown(INTRO, elem_classes="td-help")
    with gr.Row():
        word = gr.Dropdown(choices=[], label="Word to replay", allow_custom_value=True, scale=3)
        button = gr.Button("Replay training", variant="primary", elem_id="replay-btn", scale=1)
    summary = gr.Markdown(elem_id="replay-summary")
    plot = gr.Plot(empty_figure("Train in the Distill tab, then press 'Replay training'."),
                   label="Training replay", elem_id="replay-plot")
    with gr.Row():
        play = gr.Button("▶ Play", elem_id="replay-play", size="sm", scale=0, min_width=110)
        pause = gr.Button("❚❚ Pause", elem_id="replay-pause", size="sm", scale=0, min_width=110)
    gr.Markdown(CAPTION)
    details = W.api_details("trajectory")
    return ReplayTab(word, button, summary, plot, play, pause, details)


def handler_for(rt: Runtime):
    @gpu(duration=60)
    def handler(word, st: SessionState, progress=gr.Progress()):  # noqa: B008 - gradio injects the tracker
        yield from run_replay(rt, word, st, progress)

    return user_errors(handler)


def outputs(tab: ReplayTab) -> list:
    return [tab.plot, tab.summary, tab.details]


def wire(rt: Runtime, tab: ReplayTab, state: gr.State):
    tab.play.click(None, None, None, js=PLAY_JS)  # in the browser only (no fn: not an API endpoint)
    tab.pause.click(None, None, None, js=PAUSE_JS)
    return tab.button.click(handler_for(rt), [tab.word, state], outputs(tab), api_name="trajectory", **HEAVY)
