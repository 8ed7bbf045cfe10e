"""The prompt window: the agent's instructions, as much recent history as the budget allows, the message.

A caller may add its own system text (after the agent's instructions, never instead of them) and,
for a new conversation, earlier messages of its own as context (the OpenAI-compatible endpoint);
those earlier messages share the history budget and are not stored.

Tokens are counted as UTF-8 bytes: a byte-level BPE token covers at least one byte, so this is an
upper bound that needs no tokenizer (none is downloaded) and never lets history overflow a context.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from backends.base import Message, ModelSettings
from chatspark.errors import ValidationFailed
from chatspark.store.conversations import StoredTurn

# Per-message framing (role, separators) and the reply priming, as OpenAI documents them; rounded up.
MESSAGE_OVERHEAD = 4
PRIMING = 3


class PromptWindow(msgspec.Struct, frozen=True, kw_only=True):
    messages: tuple[Message, ...]
    turns_included: int
    turns_dropped: int
    history_tokens: int


def token_bound(text: str) -> int:
    return len(text.encode()) + MESSAGE_OVERHEAD


def build_prompt(
    *,
    instructions: str,
    history: list[StoredTurn],
    stored_turns: int,
    message: str,
    model: ModelSettings,
    max_turns: int,
    max_history_tokens: int | None,
    knowledge: str = "",
    client_system: str = "",
    client_history: Sequence[Message] = (),
) -> PromptWindow:
    """`history` is oldest first; the newest turns that fit both budgets are kept, in order.
    `knowledge` (the retrieved passages, already within their own budget) goes right after the
    instructions, and `client_system` (a caller's own system text) between the two.
    `client_history` (a caller's earlier messages, oldest first) comes before the stored history
    in the prompt; what is left of the history budget after the stored turns keeps its newest
    messages."""
    room = model.context_window - model.max_output_tokens - PRIMING - token_bound(message)
    if instructions:
        room -= token_bound(instructions)
    if client_system:
        room -= token_bound(client_system)
    if knowledge:
        room -= token_bound(knowledge)
    if room < 0:
        raise ValidationFailed.field("message", "is too long for this agent's model")
    if max_history_tokens is not None:
        room = min(room, max_history_tokens)

    kept: list[StoredTurn] = []
    used = 0
    for turn in reversed(history[-max_turns:] if max_turns > 0 else []):
        cost = token_bound(turn.query) + token_bound(turn.response)
        if used + cost > room:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    context: list[Message] = []
    for earlier in reversed(client_history[-2 * max_turns:] if max_turns > 0 else []):
        cost = token_bound(earlier.content)
        if used + cost > room:
            break
        context.append(earlier)
        used += cost
    context.reverse()

    messages: list[Message] = []
    if instructions:
        # Always first, whatever the user sends: the agent's instructions are the system message.
        messages.append(Message("system", instructions))
    if client_system:
        messages.append(Message("system", client_system))
    if knowledge:
        messages.append(Message("system", knowledge))
    messages.extend(context)
    for turn in kept:
        messages.append(Message("user", turn.query))
        messages.append(Message("assistant", turn.response))
    messages.append(Message("user", message))
    return PromptWindow(
        messages=tuple(messages),
        turns_included=len(kept),
        turns_dropped=max(stored_turns - len(kept), 0),
        history_tokens=used,
    )
