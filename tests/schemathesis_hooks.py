"""Hooks for `schemathesis run` in tests/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS, never by
pytest): a valid request carries only a cursor the server issued for that list, and rates only an
assistant message.

The document says so in words and links (`nextCursor` → `cursor`); JSON Schema cannot, so a generated
string is schema-valid yet refused. A positive case keeps its cursor only if the server handed it
out for the same list (a link put it there); otherwise the cursor is dropped before the call.
Likewise an analytics period that breaks a rule between its parameters (`drop_invalid_period`).
"""

from __future__ import annotations

from typing import Any

import schemathesis

from chatspark import errors
from chatspark.analytics import period

_issued: set[tuple[str, str, str]] = set()
# A messages list names user and assistant messages alike; schemathesis infers a link from any
# row's `id` to the feedback operation, whose schema cannot say "an assistant message" (rating a
# user message is a 400 by design). A user message id seen in a list stands for its answer's id.
_answer_of: dict[str, str] = {}


def _list_of(case: schemathesis.Case) -> tuple[str, str]:
    return case.operation.path, repr(sorted((name, str(value)) for name, value in (case.path_parameters or {}).items()))


@schemathesis.hook
def before_call(ctx: Any, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    cursor = (case.query or {}).get("cursor")
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if cursor is not None and positive and (*_list_of(case), cursor) not in _issued:
        del case.query["cursor"]
    if positive and case.operation.path.endswith("/analytics"):
        drop_invalid_period(case)
    if positive and case.operation.path == "/v1/chat/completions":
        end_with_a_user_message(case)
    message = (case.path_parameters or {}).get("message_id")
    if positive and case.operation.path.endswith("/feedback") and message in _answer_of:
        case.path_parameters["message_id"] = _answer_of[message]


@schemathesis.hook
def after_call(ctx: Any, case: schemathesis.Case, response: schemathesis.Response) -> None:
    if response.status_code != 200 or not response.headers.get("content-type", [""])[0].startswith("application/json"):
        return
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("nextCursor"), str):
        _issued.add((*_list_of(case), body["nextCursor"]))
    rows = body.get("messages") if isinstance(body, dict) else None
    if isinstance(rows, list):
        for asked, answered in zip(rows, rows[1:]):
            if isinstance(asked, dict) and isinstance(answered, dict) and asked.get("role") == "user":
                _answer_of[str(asked.get("id"))] = str(answered.get("id"))


def drop_invalid_period(case: schemathesis.Case) -> None:
    """An analytics period must be a calendar day, `start` with `end`, in order and at most 366 days:
    rules between parameters that JSON Schema cannot state. A positive case whose period breaks one
    asks for the default period instead (the refusals are tested in tests/test_analytics.py)."""
    query = case.query or {}
    try:
        period(query.get("start"), query.get("end"))
    except errors.ValidationFailed:
        query.pop("start", None)
        query.pop("end", None)


def end_with_a_user_message(case: schemathesis.Case) -> None:
    """An OpenAI-compatible turn's last message is the user's, with a non-space character: a rule
    on an array's last item that JSON Schema cannot state. A positive case gets such a last message
    (its earlier, generated messages stay: they are the conversation's context)."""
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and isinstance(body.get("messages"), list) and body["messages"]:
        body["messages"][-1] = {"role": "user", "content": "When are you open?"}
