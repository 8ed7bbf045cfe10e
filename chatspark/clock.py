"""Wall-clock time in the two forms the service uses: epoch milliseconds and the contract's ISO 8601."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """`2025-02-24T11:30:15.000Z`: UTC with milliseconds, as the contract writes times."""
    seconds, millis = divmod(ms, 1000)
    t = time.gmtime(seconds)  # 4x cheaper than datetime + strftime; this runs several times per turn
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, millis)
