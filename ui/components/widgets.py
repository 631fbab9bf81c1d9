"""Input components that reject odd API values with a message naming the field.

Gradio's own Number, Slider, Checkbox and CheckboxGroup trust their payload: a string in a slider, a NaN
seed or `None` for a checkbox group end in a bare TypeError ("upstream app raised an exception"), and
a checkbox takes "no" as true. These subclasses check the payload first. `is_template = True` makes the
page render them with the parent's frontend, and their API description is the parent's.
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr

from ..runtime import MAX_UPLOAD_FILES, MAX_UPLOAD_MB, UPLOAD_TYPES


def _name(component: gr.components.Component) -> str:
    return str(component.label or "This field")


def _number(component: gr.components.Component, payload: Any) -> float:
    if isinstance(payload, bool) or not isinstance(payload, (int, float, str)):
        raise gr.Error(f"{_name(component)} must be a number, got {payload!r}.")
    try:
        value = float(payload)
    except ValueError:
        raise gr.Error(f"{_name(component)} must be a number, got {payload!r}.") from None
    if not math.isfinite(value):
        raise gr.Error(f"{_name(component)} must be a finite number, got {payload!r}.")
    low, high = component.minimum, component.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if low is not None and high is not None else (
            f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise gr.Error(f"{_name(component)} must be {bounds}, got {payload!r}.")
    return value


class Slider(gr.Slider):
    is_template = True

    def preprocess(self, payload: Any) -> float:
        return gr.Number.round_to_precision(_number(self, payload), self.precision)


class Number(gr.Number):
    is_template = True

    def preprocess(self, payload: Any) -> float | int | None:
        if payload is None or payload == "":
            return None
        value = _number(self, payload)
        if self.precision == 0 and not value.is_integer():
            raise gr.Error(f"{_name(self)} must be a whole number, got {payload!r}.")
        return self.round_to_precision(value, self.precision)


class Checkbox(gr.Checkbox):
    is_template = True

    def preprocess(self, payload: Any) -> bool | None:
        if payload is not None and not isinstance(payload, bool):
            raise gr.Error(f"{_name(self)} must be true or false, got {payload!r}.")
        return payload


class CheckboxGroup(gr.CheckboxGroup):
    is_template = True

    def preprocess(self, payload: Any) -> list:
        if payload is None:
            return []
        if isinstance(payload, str):
            payload = [payload]
        if not isinstance(payload, list):
            raise gr.Error(f"{_name(self)} must be a list of choices, got {payload!r}.")
        known = [value for _, value in self.choices]
        unknown = [v for v in payload if v not in known]
        if unknown:
            raise gr.Error(f"{_name(self)}: unknown choice(s) {', '.join(map(repr, unknown))}; "
                           f"choose from {', '.join(map(str, known))}.")
        return super().preprocess(payload)


def api_details(api_name: str) -> gr.JSON:
    """A closed accordion with the JSON an API client of `/api_name` gets (every tab has one)."""
    with gr.Accordion(f"Details (JSON, as returned by the /{api_name} API)", open=False):
        return gr.JSON()


def picker_row(word_label: str, slider: tuple[int, int, int, str], button: tuple[str, str]
               ) -> tuple[gr.Dropdown, Slider, gr.Button]:
    """The row above a per-word view: which word, one number (min, max, value, label), and the button."""
    low, high, value, label = slider
    with gr.Row():
        word = gr.Dropdown(choices=[], label=word_label, allow_custom_value=True, scale=2)
        number = Slider(low, high, value=value, step=1, label=label, scale=2)
        action = gr.Button(button[0], variant="primary", elem_id=button[1], scale=1)
    return word, number, action


def upload_inputs() -> tuple[gr.File, gr.Textbox]:
    """The two text-source inputs a corpus picker needs besides its radio: uploaded files and a hub dataset."""
    files = gr.File(label=f"Upload text files (up to {MAX_UPLOAD_FILES}, {MAX_UPLOAD_MB} MB each)",
                    file_count="multiple", file_types=list(UPLOAD_TYPES), type="filepath", height=110)
    hf_name = gr.Textbox(label="Hugging Face dataset (name[:config][:split])",
                         placeholder="wikitext:wikitext-2-raw-v1:train", max_lines=1)
    return files, hf_name
