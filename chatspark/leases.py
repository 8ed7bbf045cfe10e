"""Keeps this process's conversation and turn leases alive while their turns run.

One loop renews every held lease in one pipelined round trip each third of the lease term, so a
turn needs no timer of its own; a replica that dies stops renewing and its leases lapse.
"""

from __future__ import annotations

import logging

import anyio

from chatspark.store.errors import StoreUnavailable
from chatspark.store.leases import Lease, LeaseStore

log = logging.getLogger("chatspark.leases")


class LeaseKeeper:
    def __init__(self, leases: LeaseStore, lease_seconds: float) -> None:
        self.leases = leases
        self.interval = lease_seconds / 3
        self._held: dict[tuple[str, str], Lease] = {}  # (kind, name) -> the lease this process holds

    def hold(self, lease: Lease) -> None:
        self._held[(lease.kind, lease.name)] = lease

    def drop(self, lease: Lease) -> None:
        if self._held.get((lease.kind, lease.name)) == lease:
            del self._held[(lease.kind, lease.name)]

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            held = list(self._held.values())
            try:
                renewed = await self.leases.renew(held)
            except StoreUnavailable:
                log.warning("could not renew %d leases: the store is unreachable", len(held))
                continue
            for lease, ok in zip(held, renewed, strict=True):
                # Not renewed and still ours: it lapsed (this process stalled past the term) and may
                # be taken; the turn's write is fenced off by the token check. (A lease its turn's
                # write released meanwhile is no longer held here: nothing to say.)
                if not ok and self._held.get((lease.kind, lease.name)) == lease:
                    log.warning("a lease lapsed before its turn finished")
                    self.drop(lease)
