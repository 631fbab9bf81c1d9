"""Forward passes that stop at a chosen layer, and logits over the original plus new output rows.

Hidden-state indices follow Hugging Face's `output_hidden_states`: 0 is the embedding output, i in
1..L-1 is the output of decoder layer i, and L (also written -1) is the last hidden state after the
final norm. Stopping early saves the layers above the target and the LM head.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .limits import PRECISIONS

_tap_state = threading.local()


class _StopForward(Exception):
    """Raised by a layer tap once the requested hidden state is captured."""


def _decoder(model: PreTrainedModel) -> nn.Module:
    decoder = model.get_decoder()
    if not hasattr(decoder, "layers"):
        raise TypeError(f"{type(model).__name__}: expected a decoder with a .layers list")
    return decoder


def num_layers(model: PreTrainedModel) -> int:
    return len(_decoder(model).layers)


def resolve_layer(model: PreTrainedModel, layer: int) -> int:
    """Map -1 (and other negatives) to the HF hidden-state index; validate the range."""
    total = num_layers(model)
    resolved = total + 1 + layer if layer < 0 else layer
    if not 1 <= resolved <= total:
        raise ValueError(f"target_layer {layer} is out of range: use 1..{total} or -1 (last hidden state)")
    return resolved


def _tap(module: nn.Module, args, output, index: int) -> None:
    # One permanent hook per layer; what it does is decided per thread, so concurrent requests on the
    # shared model never see each other's settings.
    wanted = getattr(_tap_state, "layer", None)
    if wanted != index:
        return
    _tap_state.captured = output[0] if isinstance(output, tuple) else output
    if getattr(_tap_state, "stop", False):
        raise _StopForward


def _install_taps(model: PreTrainedModel) -> None:
    decoder = _decoder(model)
    if getattr(decoder, "_tokdist_taps", False):
        return
    for i, layer in enumerate(decoder.layers):
        layer.register_forward_hook(lambda m, a, o, _i=i + 1: _tap(m, a, o, _i))
    decoder._tokdist_taps = True




# The attention every model here loads with (foundations.models): transformers' SDPA, registered under our own
# name so that CPU bf16 autocast can run it in fp32 (below). Its masks are SDPA's.
ATTENTION = "tokdist_sdpa"


def _sdpa_fp32_under_cpu_autocast(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                  attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """SDPA; under CPU bf16 autocast in fp32. The CPU's bf16 flash-attention backward is about 10x slower than
    its fp32 one (200 against 18 ms per SmolLM2 student pass, 2026-12-07), and attention is a small share of a
    pass's FLOPs, so the matmuls stay bf16 and attention does not."""
    if query.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.float()
        with torch.autocast("cpu", enabled=False):
            out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                                  **kwargs)
        return out.to(torch.get_autocast_dtype("cpu")), weights
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(ATTENTION, _sdpa_fp32_under_cpu_autocast)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def autocast_dtype(device: torch.device, mixed_precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for a precision setting: "auto" is bf16 on CUDA and fp32 on CPU, "native" is bf16 on
    CUDA and on CPUs with native bf16 matmuls (fp32 on other CPUs), "bf16" is bf16 on both, "no" is fp32
    everywhere. Weights stay fp32."""
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {mixed_precision!r}")
    if mixed_precision == "bf16" or (mixed_precision in ("auto", "native") and device.type == "cuda"):
        return torch.bfloat16
    if mixed_precision == "native" and device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def autocast_for(device: torch.device, mixed_precision: str = "auto"):
    dtype = autocast_dtype(device, mixed_precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has bf16 matmul kernels for this CPU (AVX-512; 2-3x fp32 with AVX-512 BF16 or AMX).
    Without them bf16 would be emulated, slower than fp32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def decoder_forward(
    model: PreTrainedModel,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    layer: int,
    position_ids: torch.Tensor | None = None,
    cache=None,
    run_to_end: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the decoder on embeddings and return (hidden state at `layer`, final hidden or None).

    Without `run_to_end` the pass stops right after `layer`. The final hidden state (after the
    final norm) is returned only when the whole stack ran.
    """
    decoder = _decoder(model)
    total = len(decoder.layers)
    layer = resolve_layer(model, layer)
    kwargs = dict(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids)
    if cache is not None:
        kwargs.update(cache=cache, use_cache=True)
    else:
        kwargs.update(use_cache=False)
    if layer == total or run_to_end:
        if layer == total:
            final = decoder(**kwargs).last_hidden_state
            return final, final
        _install_taps(model)
        _tap_state.layer, _tap_state.stop, _tap_state.captured = layer, False, None
        try:
            final = decoder(**kwargs).last_hidden_state
            return _tap_state.captured, final
        finally:
            _tap_state.layer, _tap_state.captured = None, None
    _install_taps(model)
    _tap_state.layer, _tap_state.stop, _tap_state.captured = layer, True, None
    try:
        decoder(**kwargs)
    except _StopForward:
        pass
    finally:
        captured = _tap_state.captured
        _tap_state.layer, _tap_state.stop, _tap_state.captured = None, False, None
    if captured is None:
        raise RuntimeError(f"layer {layer} did not run")
    return captured, None


def embed_scale(model: PreTrainedModel) -> float | torch.Tensor:
    """The factor the embedding module applies to its rows (sqrt(hidden) for Gemma, 1 elsewhere)."""
    return getattr(model.get_input_embeddings(), "embed_scale", 1.0)


def embed_ids(model: PreTrainedModel, ids: torch.Tensor) -> torch.Tensor:
    # Through the module, never `.weight[ids]`, so model-specific scaling (Gemma) is applied.
    return model.get_input_embeddings()(ids)


def softcap(model: PreTrainedModel, logits: torch.Tensor) -> torch.Tensor:
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def output_logits(model: PreTrainedModel, hidden: torch.Tensor, new_rows: torch.Tensor | None = None) -> torch.Tensor:
    """Logits over every original output row, followed by one logit per new output row."""
    head = model.get_output_embeddings()
    logits = head(hidden)
    if new_rows is not None and new_rows.shape[0]:
        logits = torch.cat([logits, hidden @ new_rows.to(hidden.dtype).T], dim=-1)
    return softcap(model, logits.float())


def original_logits(model: PreTrainedModel, hidden: torch.Tensor, vocab: int) -> torch.Tensor:
    """fp32 logits over the first `vocab` output rows only (the original vocabulary, no padding rows)."""
    head = model.get_output_embeddings()
    bias = head.bias[:vocab] if getattr(head, "bias", None) is not None else None
    return softcap(model, nn.functional.linear(hidden, head.weight[:vocab], bias).float())


def own_row_logits(model: PreTrainedModel, hidden: torch.Tensor, own_rows: torch.Tensor) -> torch.Tensor:
    """Logits over every original output row, then one for each sequence's own new row.

    hidden [B, ..., H], own_rows [B, H]: sequence b sees only its own word's new token, so a word's
    next-token loss does not depend on which other words train beside it.
    """
    logits = model.get_output_embeddings()(hidden)
    own = own_rows.to(hidden.dtype).view(own_rows.shape[0], *([1] * (hidden.dim() - 2)), own_rows.shape[-1])
    return softcap(model, torch.cat([logits, (hidden * own).sum(-1, keepdim=True)], dim=-1).float())

