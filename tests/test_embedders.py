"""The embedders (backends/embedders): the offline one (WordLlama's shipped weights) and the provider
one (litellm against the fake OpenAI server). Both give float32 rows of the configured width, each
of unit length, so that a dot product is the cosine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import numpy as np
import pytest

from backends.embedders import load_embedder
from backends.embedders.base import Embedder, EmbedderSettings, EmbeddingError
from tests.fake_openai import FakeOpenAI, embedding_vector, error, refused_base_url, slow
from tests.fake_openai import fake_openai  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "CHATSPARK_TEST_EMBEDDING_KEY"


def embed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    return anyio.run(embedder.embed, texts)


def offline(dimensions: int = 256, batch_size: int = 64) -> Embedder:
    return load_embedder(EmbedderSettings(name="offline", dimensions=dimensions, batch_size=batch_size))


def assert_unit_rows(vectors: np.ndarray, rows: int, dimensions: int) -> None:
    assert vectors.dtype == np.float32 and vectors.shape == (rows, dimensions)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


# --- offline (WordLlama) --------------------------------------------------------------------------


def test_offline_vectors_are_unit_float32_rows_of_the_configured_width() -> None:
    for dimensions in (256, 64):
        vectors = embed(offline(dimensions), ["How do I return an item?", "Opening hours", "Ünïcödé ✓"])
        assert_unit_rows(vectors, 3, dimensions)


def test_offline_vectors_are_wordllamas_own_cut_to_the_width_and_renormalised() -> None:
    from wordllama import WordLlama

    import backends.embedders.wordllama as module

    texts = ["Refunds go back to the original payment method.", "a", "x" * 5000]
    reference = WordLlama.load(cache_dir=Path(module.wordllama.__file__).parent, disable_download=True).embed(texts)
    for dimensions in (256, 64):
        expected = reference[:, :dimensions] / np.linalg.norm(reference[:, :dimensions], axis=1, keepdims=True)
        np.testing.assert_allclose(embed(offline(dimensions), texts), expected, atol=1e-5)


def test_a_paraphrase_is_closer_than_an_unrelated_text() -> None:
    query, paraphrase, unrelated = embed(offline(), [
        "How can I get my money back?",
        "Refunds are paid to your card within five days.",
        "The museum opens at nine on Sundays.",
    ])
    assert query @ paraphrase > query @ unrelated


def test_batching_does_not_change_the_vectors() -> None:
    texts = [f"text number {n} about topic {n % 7}" for n in range(23)]
    np.testing.assert_array_equal(embed(offline(batch_size=5), texts), embed(offline(batch_size=64), texts))


def test_a_lone_surrogate_is_embedded_as_a_replacement_character() -> None:
    # JSON may carry "\udaf5" alone; the tokenizer takes only valid UTF-8 (a 500 found by the fuzz test).
    vectors = embed(offline(), ["refund \udaf5 please", "refund ? please"])
    assert_unit_rows(vectors, 2, 256)


def test_no_texts_give_an_empty_array_and_an_empty_text_gives_zeros() -> None:
    assert embed(offline(), []).shape == (0, 256)
    vectors = embed(offline(64), ["", "word"])
    assert not vectors[0].any() and np.isclose(np.linalg.norm(vectors[1]), 1.0)


def test_the_model_loads_once_per_process_however_many_threads_ask() -> None:
    import backends.embedders.wordllama as module

    loaded: list[object] = []
    threads = [threading.Thread(target=lambda: loaded.append(module.load_model("l2_supercat", 32))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loaded) == 8 and all(model is loaded[0] for model in loaded)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (EmbedderSettings(name="e", model="no_such_model"), "wordllama has no model 'no_such_model'"),
        (EmbedderSettings(name="e", dimensions=512), "dimensions must be 1 to 256"),
        (EmbedderSettings(name="e", dimensions=0), "dimensions must be 1 to 256"),
    ],
)
def test_offline_settings_it_cannot_serve_are_refused_when_created(settings: EmbedderSettings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_embedder(settings)


_OFFLINE_SCRIPT = """
import asyncio, json, logging, os, sys
events = []
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
        events.append(event)
        raise OSError(101, "Network is unreachable")
sys.addaudithook(hook)
from backends.embedders import load_embedder
from backends.embedders.base import EmbedderSettings
embedder = load_embedder(EmbedderSettings(name="offline"))
vectors = asyncio.run(embedder.embed(["hello there", "no network needed"]))
print(json.dumps({"events": events, "shape": list(vectors.shape), "hf_offline": os.environ.get("HF_HUB_OFFLINE"),
                  "root_handlers": len(logging.getLogger().handlers), "hub": "huggingface_hub" in sys.modules}))
"""


def test_offline_embedder_works_with_the_network_unreachable_and_no_cache(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_"))}
    env["HOME"] = str(tmp_path)  # an empty home: nothing cached in ~/.cache can be what made it work
    result = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["events"] == []  # not even a DNS look-up was tried
    assert seen["shape"] == [2, 256]
    assert seen["hf_offline"] == "1"  # a Hub fallback, were there one, would fail at once
    assert seen["root_handlers"] == 0  # importing wordllama no longer switches on INFO logging
    assert list(tmp_path.iterdir()) == []  # and nothing was written to the home folder


# --- provider (litellm) ---------------------------------------------------------------------------


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, "sk-fake-embedding-key")
    return KEY_ENV


def provider(base_url: str, key_env: str | None = KEY_ENV, **overrides: object) -> Embedder:
    settings = {"name": "provider", "kind": "litellm", "provider_model": "openai/text-embedding-3-small",
                "api_base": base_url, "api_key_env": key_env, "dimensions": 48, "batch_size": 2,
                "timeout_seconds": 10.0, **overrides}
    return load_embedder(EmbedderSettings(**settings))  # type: ignore[arg-type]


def expected(text: str, dimensions: int) -> np.ndarray:
    vector = np.array(embedding_vector(text, dimensions), dtype=np.float64)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def test_provider_vectors_come_back_in_order_normalised_in_batches(fake_openai: FakeOpenAI, key: str) -> None:
    texts = ["first", "second", "third"]
    vectors = embed(provider(fake_openai.base_url), texts)
    assert_unit_rows(vectors, 3, 48)
    np.testing.assert_allclose(vectors, [expected(t, 48) for t in texts], atol=1e-6)
    assert [r["input"] for r in fake_openai.embedding_requests] == [["first", "second"], ["third"]]
    assert {(r["model"], r["dimensions"]) for r in fake_openai.embedding_requests} == {("text-embedding-3-small", 48)}
    assert fake_openai.requests == []  # the chat route saw nothing


def test_a_provider_answering_another_width_is_a_configuration_error(fake_openai: FakeOpenAI, key: str) -> None:
    # litellm drops `dimensions` for models it does not know to take it; the fake then answers 64.
    with pytest.raises(EmbeddingError, match="returned 64 dimensions, 48 are configured") as caught:
        embed(provider(fake_openai.base_url, provider_model="openai/some-local-model"), ["text"])
    assert caught.value.retryable is False
    assert "dimensions" not in fake_openai.embedding_requests[0]


def test_a_missing_key_fails_without_calling_the_provider(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(EmbeddingError, match=f"set {KEY_ENV}") as caught:
        embed(provider(fake_openai.base_url), ["text"])
    assert caught.value.retryable is False and fake_openai.embedding_requests == []


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (401, False), (404, False), (429, True), (500, True), (503, True)])
def test_provider_errors_say_whether_a_retry_may_help(fake_openai: FakeOpenAI, key: str, status: int, retryable: bool) -> None:
    fake_openai.enqueue(*[error(status, "the input was: secret words")] * 3)  # the SDK may retry twice itself
    with pytest.raises(EmbeddingError, match=f"answered HTTP {status}") as caught:
        embed(provider(fake_openai.base_url), ["secret words"])
    assert caught.value.retryable is retryable
    assert "secret" not in str(caught.value)  # provider texts can quote the input: never passed on


def test_an_unreachable_provider_is_a_retryable_error(key: str) -> None:
    with pytest.raises(EmbeddingError, match="could not reach the provider") as caught:
        embed(provider(refused_base_url()), ["text"])
    assert caught.value.retryable is True


def test_a_slow_provider_is_cut_off_at_the_timeout(fake_openai: FakeOpenAI, key: str) -> None:
    fake_openai.enqueue(*[slow(5)] * 3)
    started = time.monotonic()
    with pytest.raises(EmbeddingError, match="did not answer within 0.5 s") as caught:
        embed(provider(fake_openai.base_url, timeout_seconds=0.5), ["text"])
    assert caught.value.retryable is True
    assert time.monotonic() - started < 2  # the SDK's own retries stay inside the deadline
