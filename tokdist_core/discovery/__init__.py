"""Which words to add: candidates ranked by tokens saved under the model's tokenizer.

    corpus      words and phrases counted in a corpus (discover_words), fixed candidates counted there
    tokenizer   another tokenizer's word-initial vocabulary (candidates_from_tokenizer)
    frequency   a frequency list of word<TAB>count lines or JSONL (candidates_from_frequency_list)
    candidates  what they all produce (Discovery, Candidate, Rejection) and the shared filters and ranking

The cumulative share of the corpus's tokens saved by the top N is an upper bound when phrases and
their own words are both listed (" New York" and " York" save on the same occurrences).
"""

from ..foundations.limits import MAX_TOP
from .candidates import Candidate, Discovery, DiscoveryError, Rejection
from .corpus import corpus_sources, discover_words
from .frequency import FrequencyList, candidates_from_frequency_list, read_frequency_list
from .tokenizer import candidates_from_tokenizer, load_tokenizer

__all__ = [
    "MAX_TOP", "Candidate", "Discovery", "DiscoveryError", "FrequencyList", "Rejection", "candidates_from_frequency_list",
    "candidates_from_tokenizer", "corpus_sources", "discover_words", "load_tokenizer", "read_frequency_list",
]
