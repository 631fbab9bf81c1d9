"""The `gguf` format: the base's GGUF file with the new tokens added, for llama.cpp.

The new tokens go into `tokenizer.ggml.tokens` as USER_DEFINED tokens (llama.cpp's tokenizer then matches
them in running text, as the Hugging Face tokenizer matches its added tokens), their rows are appended to
`token_embd.weight` (and `output.weight` when the head is untied) in that tensor's own type (dequantized,
extended, quantized again with gguf.quants), and every other tensor is copied as it is. The base must be a
GGUF file: the bundled models have one; other models are refused with the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..foundations.models import BUNDLED_MODELS, LoadedModel, bundled_gguf
from ..foundations.rows import NewTokenRows

GGUF_ARCHITECTURES = ("llama",)  # checked against llama.cpp here (SmolLM2); others are refused
GGUF_TOKENIZERS = ("gpt2",)  # byte-level BPE vocabularies, where a USER_DEFINED token is plain text


def base_gguf(lm: LoadedModel) -> Path:
    """The GGUF file `lm` came from, or ValueError saying why a `gguf` export is not possible for it."""
    import gguf

    kind, _, name = lm.source.partition(":")
    if kind != "bundled" or name not in BUNDLED_MODELS:
        raise ValueError(f"the gguf format adds the new tokens to the base's GGUF file, and {lm.source} has none: "
                         f"it is available for the bundled models ({', '.join(BUNDLED_MODELS)}); for another "
                         "model, convert the hf export with llama.cpp's convert_hf_to_gguf.py")
    path = bundled_gguf(BUNDLED_MODELS[name])
    fields = gguf.GGUFReader(path).fields
    arch, tok = fields["general.architecture"].contents(), fields["tokenizer.ggml.model"].contents()
    if arch not in GGUF_ARCHITECTURES or tok not in GGUF_TOKENIZERS:
        raise ValueError(f"the gguf format supports the architectures {', '.join(GGUF_ARCHITECTURES)} with "
                         f"{', '.join(GGUF_TOKENIZERS)} vocabularies; {lm.name} is {arch} with a {tok} vocabulary")
    return path


def save_gguf(lm: LoadedModel, rows: NewTokenRows, out_file: str | Path) -> Path:
    """Write the base GGUF with `rows`' words appended as USER_DEFINED tokens (ids len(vocab), ...)."""
    import gguf

    reader = gguf.GGUFReader(base_gguf(lm))
    arch = reader.fields["general.architecture"].contents()
    added = len(rows.words)
    if len(reader.fields["tokenizer.ggml.tokens"].data) != len(lm.tokenizer):  # ids must agree with the hf export
        raise ValueError(f"{lm.name}'s GGUF vocabulary differs from its tokenizer's; the new ids would not match")
    writer = gguf.GGUFWriter(str(out_file), arch)
    extend = {
        # A special token from a description takes the space before it (lstrip in the hf tokenizer); llama.cpp
        # has no lstrip for added tokens, so its text here carries that space, which gives the same ids mid-sentence.
        "tokenizer.ggml.tokens": [" " + w if rows.descriptions.get(w, "").startswith(" ") else w for w in rows.words],
        "tokenizer.ggml.token_type": [int(gguf.TokenType.USER_DEFINED)] * added,
        "tokenizer.ggml.scores": [0.0] * added,
    }
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the writer writes these itself
        value, vtype = field.contents(), field.types[0]
        if name in extend:
            value = list(value) + extend[name]
        elif name == f"{arch}.vocab_size":
            value += added
        writer.add_key_value(name, value, vtype, field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None)
    new_rows = {"token_embd.weight": rows.input_rows, "output.weight": rows.output_matrix()}
    for tensor in reader.tensors:
        data = tensor.data
        if tensor.name in new_rows:
            base = (np.asarray(data, dtype=np.float32) if tensor.tensor_type in (gguf.GGMLQuantizationType.F32,
                                                                                 gguf.GGMLQuantizationType.F16)
                    else gguf.quants.dequantize(data, tensor.tensor_type))
            extended = np.concatenate([base, new_rows[tensor.name].detach().float().cpu().numpy()])
            data = gguf.quants.quantize(extended, tensor.tensor_type)
        writer.add_tensor(tensor.name, data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out_file)
