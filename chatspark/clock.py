"""Wall-clock time in the two forms the service uses: epoch milliseconds and the contract's ISO 8601."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """`2025-02-24T11:30:15.000Z`: UTC with milliseconds, as the contract writes times."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
