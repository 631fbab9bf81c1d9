"""reproduce.py: Python code that redoes a run with the library."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def reproduce_snippet(model: str, words: list[str], method: str, config: dict, data: str | list[str] = "auto",
                      snippet_len: int = 50, snippets_per_token: int = 25, mid_sentence: bool = True,
                      output_policy: str = "ntp", snippet_edits: Sequence[Sequence] = (),
                      unapplied_edits: Sequence[Sequence] = (), heldout_per_token: int = 0,
                      contexts_seed: int | None = None, descriptions: Mapping[str, str] | None = None) -> str:
    """Python code that redoes a run with the library: every setting that shapes the rows is written out.

    `data` is written as given (a list stays a list); `words` are the trained forms, and `mid_sentence`
    says whether they carry the leading space. `snippet_edits` (word, index or None, text) are the snippets
    a person wrote that the rows learned from; `unapplied_edits` the ones written after the rows were trained,
    named in a comment only, since the rows do not reflect them. `heldout_per_token` and `contexts_seed`
    are the mining's, written when they decide which snippets trained. `descriptions`: the special tokens among
    `words` and the text each stands for (as read, with its leading space when mid-sentence).
    """
    descriptions = descriptions or {}
    plain = [w for w in words if w not in descriptions]
    keys = ("optimizer", "epochs", "batch_size", "tokens_after", "learning_rate", "target_layer", "losses",
            "ntp_weight", "init", "schedule", "warmup", "seed", "mixed_precision")
    # A tuple field may come back from JSON or a session as a list; it is written as the tuple the config holds.
    values = {k: tuple(config[k]) if isinstance(config[k], list) else config[k] for k in keys if k in config}
    args = ", ".join(f"{k}={v!r}" for k, v in values.items())
    edits = ""
    if snippet_edits:
        lines = "".join(f"    {(w, i, t)!r},\n" for w, i, t in snippet_edits)
        edits = ("# Snippets you wrote, in the order you wrote them: (word, training snippet replaced (0-based) or\n"
                 f"# None to add one, text).\nsnippet_edits = [\n{lines}]\n")
    if unapplied_edits:
        later = sorted({w.strip() for w, _, _ in unapplied_edits})
        edits += (f"# Not in these rows: {len(unapplied_edits)} snippet(s) of {', '.join(map(repr, later))} written "
                  "after it was last trained.\n")
    return (
        "from tokdist_core import DistillationConfig, TokenDistillation\n\n"
        f"{edits}"
        f"td = TokenDistillation(model={model!r})\n"
        "model, tokenizer = td.run(\n"
        f"    new_tokens={[w.strip() for w in plain]!r},\n"
        + (f"    describe={ {t: d.strip() for t, d in descriptions.items()}!r},\n" if descriptions else "") +
        f"    data={data!r},\n"
        f"    method={method!r}, mid_sentence={mid_sentence!r}, output_policy={output_policy!r},\n"
        f"    training=DistillationConfig({args}),\n"
        f"    snippet_len={snippet_len}, snippets_per_token={snippets_per_token},\n"
        + (f"    heldout_per_token={heldout_per_token!r},\n" if heldout_per_token else "")
        + (f"    contexts_seed={contexts_seed!r},\n" if contexts_seed not in (None, config.get("seed")) else "")
        + ("    snippet_edits=snippet_edits,\n" if snippet_edits else "") +
        "    out_path='tokdist-model', save=True,\n"
        ")\n"
        f"print(tokenizer.tokenize({words[0] if words else ' word'!r}))\n"
    )
