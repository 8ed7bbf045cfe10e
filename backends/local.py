"""Offline backend: answers from the agent's FAQ by word overlap with the last user message, else
extractively from the agent's knowledge (the best sentences of the best retrieved passage).

Deterministic and dependency-free, so agents work with no provider, no key and no network.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections import Counter
from collections.abc import AsyncGenerator

import anyio

from backends.base import Completion, Delta, FaqEntry, Message, ModelCall, TokenUsage

DEFAULT_NO_ANSWER = "Sorry, I don't know the answer to that."
# Cosine similarity below this is "not the same question": unrelated questions score 0 here, and
# one shared topic word out of two or three already scores well above it.
THRESHOLD = 0.35

_STOPWORDS = frozenset(
    """a about am an and any are as at be been but by can could do does did for from get got have
    has had hello hey hi how i if in is it its let me my no not of on or our please so tell than that
    the their them then there these they this to us was we were what when where which who whom why
    will with would you your yours""".split()
)

# Light synonyms, so the usual ways of asking about a topic meet on one word.
_SYNONYM_GROUPS = {
    "open": "open opening opens hours hour time times close closed closing closes schedule",
    "weekend": "weekend weekends saturday saturdays sunday sundays",
    "contact": "contact reach email e-mail mail phone telephone call write address",
}

_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")
_PIECE = re.compile(r"\s*\S+\s*")


def _stem(word: str) -> str:
    """A crude suffix stripper: enough to make "opening"/"open" and "hours"/"hour" meet."""
    for suffix in ("ing", "ies", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


_SYNONYMS = {_stem(w): group for group, words in _SYNONYM_GROUPS.items() for w in words.split()}


def _terms(text: str, vocabulary: tuple[str, ...] = ()) -> list[str]:
    """Content words of `text`, stemmed and mapped to synonyms; unknown words are matched against
    `vocabulary` (sorted, for determinism) to survive a typo."""
    terms = []
    for word in _WORD.findall(text.lower().replace("\u2019", "'")):
        word = word.removesuffix("'s")
        if word in _STOPWORDS or word.isdigit():
            continue
        stem = _stem(word)
        if vocabulary and len(stem) >= 5 and stem not in vocabulary:
            # Only longer words: in short ones a one-letter difference makes too many false hits.
            close = difflib.get_close_matches(stem, vocabulary, n=1, cutoff=0.8)
            # A typo keeps its first letter; a prefix does not ("unopened" is not "opened").
            stem = close[0] if close and close[0][0] == stem[0] else stem
        terms.append(_SYNONYMS.get(stem, stem))
    return terms


class _Index:
    """TF-IDF vectors of the FAQ questions."""

    def __init__(self, faq: tuple[FaqEntry, ...]) -> None:
        self.entries = faq
        counts = [Counter(_terms(entry.question)) for entry in faq]
        document_frequency = Counter(term for count in counts for term in count)
        # Smoothed IDF: a word in every question still counts a little, as it does with 1-3 entries.
        self.idf = {t: math.log((1 + len(faq)) / (1 + df)) + 1 for t, df in document_frequency.items()}
        self.vectors = [self._weigh(count) for count in counts]
        self.vocabulary = tuple(sorted(set(self.idf) | set(_SYNONYMS)))

    def _weigh(self, count: Counter[str]) -> dict[str, float]:
        return {term: n * self.idf.get(term, 0.0) for term, n in count.items()}

    def best(self, question: str) -> tuple[FaqEntry | None, float]:
        query = self._weigh(Counter(_terms(question, self.vocabulary)))
        query_norm = math.sqrt(sum(w * w for w in query.values()))
        best: tuple[FaqEntry | None, float] = (None, 0.0)
        if query_norm == 0:
            return best
        for entry, vector in zip(self.entries, self.vectors, strict=True):
            norm = math.sqrt(sum(w * w for w in vector.values()))
            if norm == 0:
                continue
            score = sum(w * vector.get(t, 0.0) for t, w in query.items()) / (query_norm * norm)
            if score > best[1]:  # strict: on a tie the earlier entry wins
                best = (entry, score)
        return best


@functools.lru_cache(maxsize=128)
def _index(faq: tuple[FaqEntry, ...]) -> _Index:
    return _Index(faq)


def estimate_tokens(text: str) -> int:
    """About four bytes a token, the usual rule of thumb for English with BPE tokenizers."""
    return math.ceil(len(text.encode()) / 4)


def answer(call: ModelCall) -> str:
    no_answer = call.no_answer or DEFAULT_NO_ANSWER
    question = next((m.content for m in reversed(call.messages) if m.role == "user"), "")
    if not question.strip():
        return no_answer
    if call.faq:
        entry, score = _index(call.faq).best(question)
        if entry is not None and score >= THRESHOLD:
            return entry.answer  # the FAQ answers first, word for word
    if call.excerpts:
        return _extract(question, call.excerpts[0].text) or no_answer
    return no_answer


_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
EXTRACT_SENTENCES = 2


def _extract(question: str, passage: str) -> str:
    """The passage's sentences that share the most content words with the question (in passage
    order, at most two); the passage's first sentences when none does. Retrieval already judged the
    passage relevant: this only picks what to quote."""
    wanted = set(_terms(question))
    # Headings are not answers; the text's own line breaks are only wrapping.
    prose = " ".join(line.strip() for line in passage.splitlines() if not line.lstrip().startswith("#"))
    sentences = [s.strip() for s in _SENTENCE.findall(prose) if len(s.strip()) > 3]
    if not sentences:
        return ""
    scored = sorted(range(len(sentences)), key=lambda i: -len(wanted & set(_terms(sentences[i]))))
    best = sorted(scored[:EXTRACT_SENTENCES]) if wanted & set(_terms(sentences[scored[0]])) else [0, 1][: len(sentences)]
    return " ".join(sentences[i] for i in best)


def _usage(messages: tuple[Message, ...], text: str) -> TokenUsage:
    return TokenUsage(sum(estimate_tokens(m.content) for m in messages), estimate_tokens(text))


class LocalBackend:
    async def complete(self, call: ModelCall) -> Completion:
        text = answer(call)
        return Completion(text, _usage(call.messages, text))

    async def stream(self, call: ModelCall) -> AsyncGenerator[Delta, None]:
        text = answer(call)
        for piece in _PIECE.findall(text) or ([text] if text else []):
            yield Delta(piece)
            await anyio.sleep(0)  # let other tasks run, as a real stream would
        yield Delta("", _usage(call.messages, text))

    async def aclose(self) -> None:
        pass


def create() -> LocalBackend:
    return LocalBackend()
