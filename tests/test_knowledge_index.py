"""One agent's hybrid index: what a question finds, when it finds nothing, what fits a budget, and
the per-process cache of indexes. Vectors come from the real offline embedder (wordllama, shipped
in its wheel), except where the point is the fusion itself and hand-made vectors say it plainly."""

from __future__ import annotations

import os

import numpy as np
import pytest

from chatspark.knowledge.documents import Passage
from chatspark.knowledge.index import Fusion, IndexCache, KnowledgeIndex, select
from chatspark.prompt import token_bound

PAGES = {
    "password": "Forgotten password. On the sign-in screen tap Forgot password and enter your email; the reset link works for one hour.",
    "refunds": "Refunds reach your card within five to ten working days after we receive the returned parcel.",
    "shipping": "Standard delivery takes two to four working days within the EU and costs 4.95 euros.",
    "bridge": "Plug the Lumora Bridge into your router with the Ethernet cable; the ring light turns solid blue when it is online.",
    "flicker": "Smart bulbs flicker or buzz on a traditional wall dimmer. Replace the dimmer with an ordinary switch.",
    "warranty": "Every product has a two-year limited warranty covering defects in materials and workmanship.",
}


@pytest.fixture(scope="module")
def embed():  # type: ignore[no-untyped-def]
    import wordllama
    from wordllama import WordLlama

    model = WordLlama.load(cache_dir=os.path.dirname(wordllama.__file__), disable_download=True)
    return lambda texts: np.asarray(model.embed(list(texts), norm=True), dtype=np.float32)


def passage(key: str, text: str) -> Passage:
    return Passage(id=f"1:1:{key}", training_id=1, source="help", text=text)


@pytest.fixture(scope="module")
def help_index(embed) -> KnowledgeIndex:  # type: ignore[no-untyped-def]
    passages = [passage(key, text) for key, text in PAGES.items()]
    return KnowledgeIndex(passages, embed([p.text for p in passages]))


def ask(index: KnowledgeIndex, embed, question: str):  # type: ignore[no-untyped-def]
    return index.search(question, embed([question])[0], top_k=3)


def test_a_question_using_the_passages_words_finds_it_first(help_index, embed) -> None:  # type: ignore[no-untyped-def]
    found = ask(help_index, embed, "How do I connect the Lumora Bridge to my router?")
    assert found.relevant
    assert found.hits[0].passage.id == "1:1:bridge"
    assert found.hits[0].lexical_rank == 1


def test_a_paraphrase_sharing_no_word_is_found_by_the_vectors(help_index, embed) -> None:  # type: ignore[no-untyped-def]
    found = ask(help_index, embed, "I can't remember my login credentials")
    assert found.hits[0].passage.id == "1:1:password"
    assert found.hits[0].lexical_rank is None  # BM25 had nothing to go on
    assert found.hits[0].vector_rank == 1


def test_a_passage_both_rankings_find_outranks_one_found_by_a_single_ranking() -> None:
    # Hand-made vectors put "c" then "b" nearest the query; BM25 ranks "a" then "b" on "invoice".
    passages = [
        passage("a", "invoice invoice numbering"),
        passage("b", "invoice templates"),
        passage("c", "unrelated words here"),
        passage("d", "other words there"),
    ]
    vectors = np.array([[0.0, 1.0, 0.0], [0.6, 0.8, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    even = Fusion(lexical_weight=1.0, lexical_floor=0.0, lexical_share=0.0, candidates=2)
    found = KnowledgeIndex(passages, vectors, fusion=even).search("invoice", np.array([1.0, 0.0, 0.0], dtype=np.float32), top_k=3)
    by_id = {hit.passage.id: hit for hit in found.hits}
    assert (by_id["1:1:a"].lexical_rank, by_id["1:1:a"].vector_rank) == (1, None)
    assert (by_id["1:1:c"].lexical_rank, by_id["1:1:c"].vector_rank) == (None, 1)
    assert (by_id["1:1:b"].lexical_rank, by_id["1:1:b"].vector_rank) == (2, 2)
    assert found.hits[0].passage.id == "1:1:b"
    assert found.hits[0].score > found.hits[1].score


def test_the_fused_score_is_one_for_a_passage_first_in_both_rankings() -> None:
    passages = [passage("a", "billing address"), passage("b", "gift cards")]
    index = KnowledgeIndex(passages, np.eye(2, dtype=np.float32), fusion=Fusion(lexical_floor=0.0))
    found = index.search("billing address", np.array([1.0, 0.0], dtype=np.float32), top_k=2)
    assert found.hits[0].score == 1.0
    assert 0.0 < found.hits[1].score < 1.0


def test_an_unrelated_question_is_not_relevant(help_index, embed) -> None:  # type: ignore[no-untyped-def]
    found = ask(help_index, embed, "Which team won the football world cup in 1998?")
    assert not found.relevant
    assert found.hits  # the caller still sees what was closest, for logs


def test_an_empty_index_answers_nothing() -> None:
    index = KnowledgeIndex([], np.zeros((0, 256), dtype=np.float32))
    found = index.search("anything", np.ones(256, dtype=np.float32), top_k=5)
    assert found.hits == [] and not found.relevant
    assert len(index) == 0


def test_vectors_must_match_the_passages() -> None:
    with pytest.raises(ValueError):
        KnowledgeIndex([passage("a", "text")], np.zeros((2, 4), dtype=np.float32))


def test_select_keeps_the_best_hits_that_fit_the_budget(help_index, embed) -> None:  # type: ignore[no-untyped-def]
    hits = help_index.search("delivery refund", embed(["delivery refund"])[0], top_k=6).hits
    budget = token_bound(hits[0].passage.text) + token_bound(hits[1].passage.text)
    kept = select(hits, budget)
    assert [h.passage.id for h in kept[:2]] == [h.passage.id for h in hits[:2]]
    assert sum(token_bound(h.passage.text) for h in kept) <= budget


def test_select_skips_a_passage_too_large_for_the_room_left() -> None:
    index = KnowledgeIndex(
        [passage("big", "refund " + "x" * 400), passage("small", "refund policy")],
        np.array([[1.0, 0.0], [0.8, 0.6]], dtype=np.float32),
    )
    hits = index.search("refund", np.array([1.0, 0.0], dtype=np.float32), top_k=2).hits
    assert hits[0].passage.id == "1:1:big"
    kept = select(hits, budget_tokens=100)
    assert [h.passage.id for h in kept] == ["1:1:small"]
    assert select(hits, budget_tokens=0) == []


def sized_index(n_passages: int) -> KnowledgeIndex:
    passages = [passage(str(n), f"passage number {n} about topic {n}") for n in range(n_passages)]
    return KnowledgeIndex(passages, np.eye(n_passages, 8, dtype=np.float32))


def test_the_cache_serves_an_index_only_for_its_version() -> None:
    cache = IndexCache(max_bytes=10_000_000)
    index = sized_index(2)
    assert cache.put("agent-1", 3, index)
    assert cache.get("agent-1", 3) is index
    assert cache.get("agent-1", 4) is None  # knowledge changed elsewhere: rebuild
    assert cache.get("agent-1", 3) is None  # and the stale entry is gone
    assert cache.nbytes == 0
    assert cache.get("agent-2", 1) is None


def test_the_cache_evicts_the_least_recently_used_beyond_its_bytes() -> None:
    first, second, third = sized_index(4), sized_index(4), sized_index(4)
    cache = IndexCache(max_bytes=first.nbytes * 2 + first.nbytes // 2)
    cache.put("a", 1, first)
    cache.put("b", 1, second)
    assert cache.get("a", 1) is first  # "a" is now the most recently used
    cache.put("c", 1, third)
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) is first and cache.get("c", 1) is third
    assert cache.nbytes <= cache.max_bytes and len(cache) == 2


def test_the_cache_keeps_no_index_larger_than_its_bound() -> None:
    cache = IndexCache(max_bytes=100)
    assert not cache.put("a", 1, sized_index(3))
    assert cache.get("a", 1) is None and cache.nbytes == 0


def test_an_older_version_built_late_does_not_replace_a_newer_one() -> None:
    cache = IndexCache(max_bytes=10_000_000)
    newer, older = sized_index(2), sized_index(2)
    cache.put("a", 5, newer)
    assert not cache.put("a", 4, older)
    assert cache.get("a", 5) is newer


def test_passages_without_a_single_indexable_term_are_searched_by_vector_only() -> None:
    """`# A\nB.`: every word a stopword; bm25s would divide by a zero average length."""
    passages = [Passage(id="1:1:0", training_id=1, source="s", text="A. B.")]
    index = KnowledgeIndex(passages, np.ones((1, 4), dtype=np.float32) / 2)
    found = index.search("the a", np.ones(4, dtype=np.float32) / 2, top_k=3)
    assert [h.passage.text for h in found.hits] == ["A. B."] and found.hits[0].bm25 == 0.0


def test_bm25_does_not_vote_for_a_passage_sharing_only_an_incidental_word() -> None:
    """The one word the question shares with "orders" is its least telling; its rare words are in
    no passage. The vectors (hand-made: "returns" nearest) then decide alone."""
    passages = [
        passage("orders", "Your order history lists every order you placed."),
        passage("returns", "Send the parcel back within thirty days for a refund."),
        passage("other", "Gift cards never expire."),
    ]
    vectors = np.eye(3, dtype=np.float32)
    index = KnowledgeIndex(passages, vectors, fusion=Fusion(lexical_floor=0.0))
    question = "Can a wrongly sized anorak from my order be swapped?"
    found = index.search(question, np.array([0.0, 1.0, 0.0], dtype=np.float32), top_k=3)
    assert found.hits[0].passage.id == "1:1:returns"
    orders = next(h for h in found.hits if h.passage.id == "1:1:orders")
    assert orders.bm25 > 0 and orders.lexical_rank is None
    # Without the gate the same match votes, as plain BM25 would.
    ungated = KnowledgeIndex(passages, vectors, fusion=Fusion(lexical_floor=0.0, lexical_coverage=0.0))
    found = ungated.search(question, np.array([0.0, 1.0, 0.0], dtype=np.float32), top_k=3)
    assert next(h for h in found.hits if h.passage.id == "1:1:orders").lexical_rank == 1


def test_bm25_votes_for_exactly_the_passages_holding_the_questions_rare_word() -> None:
    """Many passages share the common word; three, spread through the index, also hold the rare
    one. Coverage is looked up in bm25s's posting lists, so this also checks how it reads them."""
    holders = {3, 77, 150}
    passages = [passage(str(n), "lantern " + ("zeppelin " if n in holders else "") + f"filler{n}") for n in range(200)]
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((200, 8)).astype(np.float32)
    index = KnowledgeIndex(passages, vectors, fusion=Fusion(lexical_floor=0.0, lexical_share=0.0, candidates=200))
    found = index.search("lantern zeppelin", vectors[0], top_k=200)
    assert {h.passage.id for h in found.hits if h.lexical_rank is not None} == {f"1:1:{n}" for n in holders}
