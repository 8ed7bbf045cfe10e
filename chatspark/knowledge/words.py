"""Text → the terms BM25 counts: lowercase words, English stopwords out, a light suffix stemmer."""

from __future__ import annotations

import re
from functools import lru_cache

from bm25s.stopwords import STOPWORDS_EN_PLUS

# Two or more word characters, as bm25s and scikit-learn split: "E42", "2fa" and "wi-fi"'s parts.
WORD = re.compile(r"\w\w+")

# NLTK's English list (shipped in bm25s) plus the filler of questions put to a help desk, which
# would otherwise match every page that says "you can".
STOPWORDS = frozenset(STOPWORDS_EN_PLUS) | {
    "also", "anyone", "could", "get", "got", "hi", "hello", "im", "ive", "let", "may", "might",
    "must", "need", "please", "shall", "thanks", "would", "want",
}  # fmt: skip

# Suffixes stripped, longest first, only when a stem of three letters or more remains. No stemmer
# ships offline with bm25s (it suggests PyStemmer, a C extension we do not add); this covers what
# help pages and questions mostly differ by: plurals, -ing and -ed ("refunds", "refunded").
SUFFIXES = (("sses", "ss"), ("ies", "y"), ("ing", ""), ("ed", ""), ("s", ""))
KEEP_ENDINGS = ("ss", "us", "is")  # "address", "status", "analysis" are not plurals
DOUBLED = frozenset("bdfgmnprt")  # "shipping" → "shipp" → "ship"; "bill" and "pass" keep theirs


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, replacement in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(KEEP_ENDINGS):
                break
            word = word[: -len(suffix)] + replacement
            if suffix in ("ing", "ed") and word[-1] == word[-2] and word[-1] in DOUBLED:
                word = word[:-1]
            break
    # "charge", "charged" and "charging" meet at "charg".
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The index terms of a text, in order, repeats kept (BM25 counts them)."""
    return [stem(word) for word in WORD.findall(text.lower()) if word not in STOPWORDS]
