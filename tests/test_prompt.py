"""The prompt window: instructions first, newest history that fits, never past the context."""

from __future__ import annotations

import pytest

from backends.base import ModelSettings
from chatspark.errors import ValidationFailed
from chatspark.prompt import PRIMING, build_prompt, token_bound
from chatspark.store.conversations import StoredTurn


def turns(n: int, size: int = 10) -> list[StoredTurn]:
    return [
        StoredTurn(id=f"m{i}", user_id=f"u{i}", query=f"q{i}" + "x" * size, response=f"r{i}" + "y" * size, model="m", created=i)
        for i in range(n)
    ]


MODEL = ModelSettings(name="m", context_window=1000, max_output_tokens=100)


def window(history, **overrides):  # type: ignore[no-untyped-def]
    options = {
        "instructions": "Be nice.",
        "history": history,
        "stored_turns": len(history),
        "message": "hello",
        "model": MODEL,
        "max_turns": 20,
        "max_history_tokens": None,
    } | overrides
    return build_prompt(**options)


def test_instructions_come_first_and_the_message_last():  # type: ignore[no-untyped-def]
    w = window(turns(2))
    assert [m.role for m in w.messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert w.messages[0].content == "Be nice." and w.messages[-1].content == "hello"


def test_the_turn_budget_keeps_the_newest_turns_in_order():  # type: ignore[no-untyped-def]
    w = window(turns(5), max_turns=2)
    assert [m.content[:2] for m in w.messages[1:-1]] == ["q3", "r3", "q4", "r4"]
    assert (w.turns_included, w.turns_dropped) == (2, 3)


def test_the_token_budget_drops_the_oldest_turns():  # type: ignore[no-untyped-def]
    history = turns(10, size=100)
    per_turn = token_bound(history[0].query) + token_bound(history[0].response)
    w = window(history, max_history_tokens=per_turn * 3 + 1)
    assert w.turns_included == 3 and w.history_tokens == per_turn * 3
    assert w.messages[1].content.startswith("q7")


@pytest.mark.parametrize("size", [0, 50, 300, 2000])
def test_the_prompt_never_exceeds_the_context_window(size):  # type: ignore[no-untyped-def]
    w = window(turns(30, size=size))
    total = PRIMING + sum(token_bound(m.content) for m in w.messages)
    assert total + MODEL.max_output_tokens <= MODEL.context_window
    if size == 0:
        assert w.turns_included == 20  # small turns: only the turn budget applies


def test_a_message_too_long_for_the_model_is_a_validation_error():  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed) as raised:
        window([], message="x" * 1000)
    assert "message" in raised.value.details.fields


def test_token_bound_is_at_least_the_utf8_length():  # type: ignore[no-untyped-def]
    assert token_bound("héllo 🙂") >= len("héllo 🙂".encode())


def test_a_client_system_message_follows_the_instructions_and_precedes_the_knowledge():  # type: ignore[no-untyped-def]
    w = window(turns(1), knowledge="Passages.", client_system="Answer in French.")
    assert [(m.role, m.content) for m in w.messages[:3]] == [
        ("system", "Be nice."), ("system", "Answer in French."), ("system", "Passages.")
    ]
    assert w.messages[-1].content == "hello"


def test_client_history_keeps_its_newest_messages_within_what_stored_turns_left():  # type: ignore[no-untyped-def]
    from backends.base import Message

    earlier = [Message("user", "a" * 100), Message("assistant", "b" * 100), Message("user", "c" * 100)]
    everything = window([], client_history=earlier)
    assert [m.content[0] for m in everything.messages[1:-1]] == ["a", "b", "c"]
    room = 2 * token_bound("b" * 100)
    tight = window([], client_history=earlier, max_history_tokens=room)
    assert [m.content[0] for m in tight.messages[1:-1]] == ["b", "c"]
    assert tight.history_tokens == room
    # Stored turns come first in the budget: what they leave is the client's.
    stored = turns(1, size=50)
    cost = token_bound(stored[0].query) + token_bound(stored[0].response)
    both = window(stored, client_history=earlier, max_history_tokens=cost + token_bound("c" * 100))
    assert [m.content[0] for m in both.messages[1:-1]] == ["c", "q", "r"]


def test_a_client_system_message_counts_against_the_context():  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed):
        window([], client_system="x" * MODEL.context_window)
