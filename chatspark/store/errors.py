"""What the store raises: plain exceptions, free of HTTP (the API maps them to the contract)."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """Redis could not be reached or failed; nothing is known to have been written."""


class NotReplicated(StoreUnavailable):
    """Redis took a write but fewer than `wait_replicas` replicas confirmed it in time: not durable,
    so not acknowledged (the writes are idempotent: a retry is safe)."""


class LeaseTaken(Exception):
    """Another turn of the conversation is running (it holds the lease)."""

    def __init__(self, agent_id: int | None = None) -> None:
        super().__init__(agent_id)
        self.agent_id = agent_id  # the conversation's agent; None while its first turn runs


class ConversationGone(Exception):
    """The conversation expired or was deleted while a turn ran (or belongs to another agent)."""


class IdempotencyMismatch(Exception):
    """The idempotency key was used before with another body."""
