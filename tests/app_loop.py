"""The event loop a test server runs in: uvloop (what uvicorn picks), plus one duty of a process exit.

A replica's process exit closes every socket it had. A test server is a loop in a thread of this
process, and litellm keeps its HTTP connections in a process-wide cache it closes only at exit (see
backends/litellm.py), so when the loop ends they would stay open to the fake provider, which outlives
the server. `close_connections()` closes what the app opened and left open, as the exit would.
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from uvloop import Loop as _Base
except ImportError:  # pragma: no cover (not on Windows)
    _Base = asyncio.SelectorEventLoop  # type: ignore[assignment,misc]


class ServerLoop(_Base):  # type: ignore[misc,valid-type]
    def __init__(self) -> None:
        super().__init__()
        self._opened: list[asyncio.BaseTransport] = []

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        transport, protocol = await super().create_connection(*args, **kwargs)
        self._opened = [t for t in self._opened if not t.is_closing()]
        self._opened.append(transport)
        return transport, protocol

    async def close_connections(self) -> None:
        """Closes the outgoing connections still open, and lets their protocols see it."""
        for transport in self._opened:
            if not transport.is_closing():
                transport.abort()
        self._opened.clear()
        for _ in range(3):  # connection_lost runs on a later loop turn
            await asyncio.sleep(0)


def new_loop() -> ServerLoop:
    return ServerLoop()


async def close_connections() -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ServerLoop), "a test server runs on tests.app_loop.new_loop()"
    await loop.close_connections()
