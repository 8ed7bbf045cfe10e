"""Keeps this process's conversation and turn leases alive while their turns run.

One loop renews every held lease in one pipelined round trip each third of the lease term, so a
turn needs no timer of its own; a replica that dies stops renewing and its leases lapse.
"""

from __future__ import annotations

import logging

import anyio

from chatspark.store import Store, StoreUnavailable

log = logging.getLogger("chatspark.leases")


class LeaseKeeper:
    def __init__(self, store: Store, lease_seconds: float) -> None:
        self.store = store
        self.interval = lease_seconds / 3
        self._held: dict[str, str] = {}  # lease key -> token

    def hold(self, key: str, token: str) -> None:
        self._held[key] = token

    def drop(self, key: str, token: str) -> None:
        if self._held.get(key) == token:
            del self._held[key]

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            held = list(self._held.items())
            try:
                renewed = await self.store.renew_leases(held)
            except StoreUnavailable:
                log.warning("could not renew %d leases: the store is unreachable", len(held))
                continue
            for (key, token), ok in zip(held, renewed, strict=True):
                # Not renewed and still ours: it lapsed (this process stalled past the term) and may
                # be taken; the turn's write is fenced off by the token check. (A lease its turn's
                # write released meanwhile is no longer in `_held`: nothing to say.)
                if not ok and self._held.get(key) == token:
                    log.warning("a lease lapsed before its turn finished")
                    self.drop(key, token)
