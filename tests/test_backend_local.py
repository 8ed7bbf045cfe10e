"""The offline FAQ backend: picks the right answer, says so when it has none, streams what it answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from backends import load_backend
from backends.base import Completion, Excerpt, FaqEntry, Message, ModelCall, ModelSettings, TokenUsage
from backends.local import DEFAULT_NO_ANSWER

HOURS = "We are open Monday to Friday, 9:00 to 17:00 CET."
WEEKENDS = "We are closed on weekends. Our team is back on Monday at 9:00 CET."
CONTACT = "Email support@example.com or call +1 555 0100 during opening hours."
NO_ANSWER = "Sorry, I don't know that yet."
# Agent 1 ("Support Bot") of the shipped config.toml.
SUPPORT_FAQ = (
    FaqEntry("What are your opening hours? When are you open?", HOURS),
    FaqEntry("Are you open on weekends, Saturday or Sunday?", WEEKENDS),
    FaqEntry("How can I contact you? What is your email or phone number?", CONTACT),
)
MODEL = ModelSettings(name="local", backend="local")


def call(*user_turns: str, faq: tuple[FaqEntry, ...] = SUPPORT_FAQ, no_answer: str = NO_ANSWER) -> ModelCall:
    messages = [Message("system", "You are Sparky.")]
    for turn in user_turns:
        messages += [Message("user", turn), Message("assistant", "(earlier answer)")]
    return ModelCall(model=MODEL, messages=tuple(messages[:-1]), temperature=0.2, faq=faq, no_answer=no_answer)


async def complete(model_call: ModelCall) -> Completion:
    return await load_backend("local").complete(model_call)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("When are you open?", HOURS),
        ("what are your opening hours", HOURS),
        ("What time do you close?", HOURS),
        ("Are you open on Saturday?", WEEKENDS),
        ("Are you closed on Sunday?", WEEKENDS),
        ("How can I contact you?", CONTACT),
        ("email address?", CONTACT),
        ("What's your phone number?", CONTACT),
        ("How do I contcat you?", CONTACT),  # a typo in a longer word is tolerated
    ],
)
async def test_questions_get_the_matching_faq_answer(question: str, expected: str) -> None:
    assert (await complete(call(question))).text == expected


@pytest.mark.anyio
@pytest.mark.parametrize("question", ["What is the capital of France?", "Do you sell shoes?", "hi", "", "?!"])
async def test_unrelated_questions_get_the_agents_no_answer(question: str) -> None:
    assert (await complete(call(question))).text == NO_ANSWER


@pytest.mark.anyio
async def test_without_a_configured_no_answer_a_fixed_sentence_is_used() -> None:
    assert (await complete(call("What is the capital of France?", no_answer=""))).text == DEFAULT_NO_ANSWER
    assert (await complete(call("When are you open?", faq=(), no_answer=""))).text == DEFAULT_NO_ANSWER


@pytest.mark.anyio
async def test_only_the_last_user_message_is_answered() -> None:
    assert (await complete(call("How can I contact you?", "And on weekends?"))).text == WEEKENDS


@pytest.mark.anyio
async def test_the_same_call_always_gets_the_same_completion() -> None:
    first = await complete(call("Are you open on Saturday?"))
    assert all([await complete(call("Are you open on Saturday?")) == first for _ in range(5)])


@pytest.mark.anyio
async def test_usage_estimates_four_utf8_bytes_a_token() -> None:
    model_call = ModelCall(
        model=MODEL,
        messages=(Message("system", "x" * 8), Message("user", "When are you open?")),  # 8 + 18 bytes
        temperature=0.2,
        faq=(FaqEntry("When are you open?", "é" * 5),),  # 5 characters, 10 bytes
    )
    assert (await complete(model_call)).usage == TokenUsage(prompt_tokens=2 + 5, completion_tokens=3)


@pytest.mark.anyio
async def test_stream_yields_words_that_join_to_the_complete_answer_then_usage() -> None:
    backend = load_backend("local")
    model_call = call("How can I contact you?")
    deltas = [delta async for delta in backend.stream(model_call)]
    completion = await backend.complete(model_call)
    texts = [d.text for d in deltas[:-1]]
    assert "".join(texts) == completion.text == CONTACT
    assert len(texts) == len(CONTACT.split())
    assert all(d.usage is None for d in deltas[:-1])
    assert deltas[-1].text == "" and deltas[-1].usage == completion.usage


@pytest.mark.anyio
async def test_stream_keeps_the_answers_exact_whitespace() -> None:
    faq = (FaqEntry("Tell me a poem", "  Roses are red,\n  violets  blue.\n"),)
    deltas = [d.text async for d in load_backend("local").stream(call("a poem please", faq=faq))]
    assert "".join(deltas) == "  Roses are red,\n  violets  blue.\n"


def test_the_local_backend_does_not_need_litellm() -> None:

    code = "import sys, backends.local; print('litellm' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.anyio
async def test_a_word_with_a_prefix_is_not_taken_for_a_typo_of_a_faq_word() -> None:
    # "unopened" is ratio 0.8 from "open": typo matching must not send a returns question to the hours FAQ.
    assert (await complete(call("Can I return unopened hardware?"))).text == NO_ANSWER


@pytest.mark.anyio
async def test_without_a_faq_match_the_best_passage_answers_extractively() -> None:
    excerpt = Excerpt("# Returns\nUnopened hardware can be returned\nwithin 60 days. Opened items cannot.", "Help", 0.9)
    answer = await complete(msgspec.structs.replace(call("Can I return unopened hardware?"), excerpts=(excerpt,)))
    # Wrapped lines read as prose; the heading is not quoted.
    assert answer.text.startswith("Unopened hardware can be returned within 60 days.") and "#" not in answer.text
