"""Mining throughput: Aho-Corasick over the bundled corpus for 100 words (target: under 5 s on 2 cores)."""

from __future__ import annotations

import collections
import re
import time

from benchmarks.common import emit
from tokdist_core import contexts
from tokdist_core.foundations import models
from tokdist_core.foundations.vocab import WordError, check_new_word


def main() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models.dequantized_copy(models.BUNDLED_MODELS[models.DEFAULT_MODEL]))
    start = time.perf_counter()
    documents = list(contexts.iter_documents("bundled"))
    load_s = time.perf_counter() - start
    # 100 multi-subword words that occur in the corpus, most frequent first (a realistic, busy request).
    counts = collections.Counter(m.group(1) for _, text in documents for m in re.finditer(r"(?<= )([A-Za-z]{5,})\b", text))
    splits = []
    for word, _ in counts.most_common():
        try:
            splits.append(check_new_word(tokenizer, " " + word))
        except WordError:
            continue
        if len(splits) == 100:
            break
    start = time.perf_counter()
    mined = contexts.mine_snippets(documents, tokenizer, splits, snippet_len=50, max_per_word=35, seed=0)
    mine_s = time.perf_counter() - start
    emit({
        "benchmark": "mining", "words": len(splits), "documents": len(documents),
        "corpus_chars": sum(len(t) for _, t in documents), "corpus_load_seconds_first_call": round(load_s, 2),
        "mining_seconds": round(mine_s, 3), "snippets": sum(len(v) for v in mined.values()),
        "words_with_35_snippets": sum(len(v) >= 35 for v in mined.values()), "target_seconds": 5.0,
    })


if __name__ == "__main__":
    main()
