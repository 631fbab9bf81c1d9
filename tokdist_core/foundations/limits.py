"""The bounds and choices the library enforces, in one module that imports nothing heavy.

The command line checks its arguments against these before torch is imported, and the library's own
checks use the same names, so the two can never disagree.
"""

from __future__ import annotations

DEFAULT_MODEL = "smollm2-135m"  # the bundled model used when none is named
# "auto": bf16 autocast on CUDA, fp32 on CPU; "native": bf16 wherever the hardware computes it natively
PRECISIONS = ("auto", "native", "bf16", "no")
MAX_WORD_CHARS = 64
MAX_DESCRIPTION_CHARS = 300  # a special token's description: a phrase or a sentence, read where the token stands
MAX_DESCRIPTIONS = 200  # special tokens from descriptions in one run
MAX_PHRASE_WORDS = 3  # a new token is one word or a phrase of up to 3 words (" New York", " Prime Minister")
MAX_SNIPPET_LEN = 1024
# A new token has at least 2 subwords and needs context around it, so shorter snippets never work.
MIN_SNIPPET_LEN = 4
MAX_SNIPPETS_PER_TOKEN = 1000
MAX_TOP = 100_000  # candidates one discovery lists
EXPORT_FORMATS = ("hf", "rows", "peft", "gguf")  # what an export folder can hold (export.formats)


def parse_export_formats(formats: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """("hf", "peft") from "hf,peft" or a list, in order without repeats; unknown or none: ValueError."""
    items = [str(f).strip() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    unknown = [f for f in items if f not in EXPORT_FORMATS]
    if unknown or not items:
        raise ValueError(f"unknown export format(s) {', '.join(unknown) or repr(formats)}; "
                         f"choose from {', '.join(EXPORT_FORMATS)}")
    return tuple(dict.fromkeys(items))
