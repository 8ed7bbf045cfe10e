"""GET /metrics: the Prometheus exposition, off the public API.

On the API port it answers only a scraper holding the configured bearer token (`[metrics]
token_sha256`: the token's SHA-256, compared in constant time); with no token configured it is
not there at all (404, like any unknown path). On the optional metrics port (`[metrics] port`,
`chatspark serve` only) it is the only path, and the token is required there too when one is set.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import Receive, Scope, Send

from chatspark import errors, metrics
from chatspark.api.errors import error_response
from chatspark.config import MetricsConfig

PATH = "/metrics"


class MetricsEndpoint:
    def __init__(self, config: MetricsConfig) -> None:
        self.config = config
        self._expected = bytes.fromhex(config.token_sha256) if config.token_sha256 else b""

    def serves(self, scope: Scope) -> bool:
        """Whether this request is ours: /metrics with a token configured, or anything on the metrics port."""
        if self.config.port and _local_port(scope) == self.config.port:
            return True
        return bool(self._expected) and scope["path"] == PATH

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = self._refusal(scope)
        if error is not None:
            await error_response(error, {"www-authenticate": "Bearer"} if error.status == 401 else None)(
                scope, receive, send
            )
            return
        body, content_type = metrics.render()
        head = scope["method"] == "HEAD"
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]})
        await send({"type": "http.response.body", "body": b"" if head else body})

    def _refusal(self, scope: Scope) -> errors.ApiError | None:
        if scope["path"] != PATH:
            return errors.ResourceNotFound("No such route.")
        if scope["method"] not in ("GET", "HEAD"):
            return errors.MethodNotAllowed(headers={"Allow": "GET, HEAD"})
        if not self._expected:
            return None  # the metrics port without a token: reachable only where that port is
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return errors.ApiKeyMissing("Send the metrics token: Authorization: Bearer <token>.")
        if not hmac.compare_digest(hashlib.sha256(token).digest(), self._expected):
            return errors.ApiKeyInvalid("This is not the metrics token.")
        return None


def _local_port(scope: Scope) -> int | None:
    server = scope.get("server")
    return server[1] if server else None
