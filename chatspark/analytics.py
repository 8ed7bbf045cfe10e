"""An agent's analytics over a range of UTC days: messages, conversations and leads per day, with
unanswered turns, tokens by model and the median answer latency.

Counted as turns are stored (`ConversationStore.append`, in the same round trip) and as leads are
captured (`LeadStore.add`), per agent per UTC day, kept at least 400 days; read here in one round trip.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from chatspark import errors
from chatspark.store import Store
from chatspark.store.conversations import LATENCY_BUCKETS_MS
from chatspark.wire import Wire

MAX_DAYS = 366
DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class Period(Wire):
    start: str
    end: str


class Day(Wire):
    date: str
    messages: int
    conversations: int
    leads: int
    positive_feedback: int  # ratings given that day (a rating changed or cleared later counts -1 then)
    negative_feedback: int


class AgentAnalytics(Wire):
    """GET /agents/{id}/analytics. `totalMessages` counts user and assistant messages of stored turns
    (2 per turn), `totalConversations` conversations started, `totalLeads` leads captured in the period
    (deleted ones included). `p50LatencyMs` is the upper bound of the latency bucket (100 ms … 300 s)
    holding the median answer, null without answered turns in the period."""

    total_messages: int
    total_conversations: int
    total_leads: int
    period: Period
    daily: list[Day]
    unanswered_turns: int
    positive_feedback: int
    negative_feedback: int
    tokens_by_model: dict[str, int]
    p50_latency_ms: int | None


def today() -> date:
    return datetime.now(timezone.utc).date()


def period(start: str | None, end: str | None, now: date | None = None) -> tuple[date, date]:
    """The period asked for: both days, or `start` to today, or (neither) the current UTC month up to
    today. Raises ValidationFailed naming the field."""
    current = now or today()
    if start is None and end is None:
        return current.replace(day=1), current
    if start is None:
        raise errors.ValidationFailed.field("start", "is required when end is given")
    first = _day("start", start)
    last = _day("end", end) if end is not None else current
    if last < first:
        raise errors.ValidationFailed.field("end" if end is not None else "start", "must not be before start"
                                            if end is not None else "must not be after today when end is not given")
    if (last - first).days + 1 > MAX_DAYS:
        raise errors.ValidationFailed.field("end", f"the period may span at most {MAX_DAYS} days")
    return first, last


def _day(name: str, raw: str) -> date:
    try:
        if DAY.match(raw):
            return date.fromisoformat(raw)
    except ValueError:
        pass
    raise errors.ValidationFailed.field(name, "must be a date written YYYY-MM-DD")


class Analytics:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def report(self, agent_id: int, first: date, last: date) -> AgentAnalytics:
        """The counters of days `first` to `last` (UTC, both included); one round trip."""
        days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
        stats, leads = await self.store.analytics.daily(agent_id, days)
        tokens: dict[str, int] = {}
        latency: dict[str, int] = {}
        for counters in stats:
            for field, count in counters.items():
                kind, _, name = field.partition(":")
                if kind == "tokens":
                    tokens[name] = tokens.get(name, 0) + count
                elif kind == "lat":
                    latency[name] = latency.get(name, 0) + count
        daily = [
            Day(date=day, messages=s.get("messages", 0), conversations=s.get("conversations", 0), leads=n,
                positive_feedback=s.get("feedback:positive", 0), negative_feedback=s.get("feedback:negative", 0))
            for day, s, n in zip(days, stats, leads)
        ]
        return AgentAnalytics(
            total_messages=sum(d.messages for d in daily),
            total_conversations=sum(d.conversations for d in daily),
            total_leads=sum(leads),
            period=Period(start=days[0], end=days[-1]),
            daily=daily,
            unanswered_turns=sum(s.get("unanswered", 0) for s in stats),
            positive_feedback=sum(d.positive_feedback for d in daily),
            negative_feedback=sum(d.negative_feedback for d in daily),
            tokens_by_model=tokens,
            p50_latency_ms=median_bucket(latency),
        )


def median_bucket(counts: dict[str, int]) -> int | None:
    """The upper bound (ms) of the bucket holding the median answer; past the last bound, the last."""
    total = sum(counts.values())
    if total == 0:
        return None
    seen = 0
    for bound in LATENCY_BUCKETS_MS:
        seen += counts.get(str(bound), 0)
        if seen * 2 >= total:
            return bound
    return LATENCY_BUCKETS_MS[-1]
