"""Outermost middleware: the request id on every response and log line, one access log line per
request, and the error envelope for anything that escaped everything else."""

from __future__ import annotations

import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatspark import logs, metrics
from chatspark.api.errors import error_response
from chatspark.api.metrics import PATH, MetricsEndpoint
from chatspark.errors import InternalError

log = logging.getLogger("chatspark.access")
MAX_REQUEST_ID = 128
# Scope key of a dict of headers that handlers add to whatever response the request ends with.
EXTRA_HEADERS = "chatspark.response_headers"


def accepted_request_id(value: bytes | None) -> str | None:
    """A client's id if printable ASCII and at most 128 characters; else None (we mint one)."""
    if not value or len(value) > MAX_REQUEST_ID:
        return None
    if not all(0x20 <= byte <= 0x7E for byte in value):
        return None
    return value.decode("ascii")


class RequestContext:
    """`metrics`: GET /metrics, answered here, before the drain and the routes (a scrape still
    works while the replica drains, and it is no API operation)."""

    def __init__(self, app: ASGIApp, metrics_endpoint: MetricsEndpoint | None = None) -> None:
        self.app = app
        self.metrics_endpoint = metrics_endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = traceparent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                supplied = value
            elif name == b"traceparent":
                traceparent = value
        rid = accepted_request_id(supplied) or "req_" + secrets.token_hex(12)
        facts = logs.RequestFacts(traceparent=accepted_traceparent(traceparent))
        tokens = logs.begin_request(rid, facts)
        status = 0
        finished = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = scope.get(EXTRA_HEADERS) or {}
                replaced = {b"x-request-id", *(name.encode() for name in extra)}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in replaced]
                headers.append((b"x-request-id", rid.encode()))
                headers.extend((name.encode(), value.encode()) for name, value in extra.items())
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        async def receive_watching() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" and not finished:
                facts.client_disconnected = True
            return message

        app = self.metrics_endpoint if self.metrics_endpoint and self.metrics_endpoint.serves(scope) else self.app
        try:
            await app(scope, receive_watching, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if not status:
                await error_response(InternalError())(scope, receive, send_with_id)
        finally:
            self._account(scope, facts, status)
            logs.end_request(tokens)

    @staticmethod
    def _account(scope: Scope, facts: logs.RequestFacts, status: int) -> None:
        """The request's metrics and its one access line."""
        elapsed = time.perf_counter() - facts.started
        route = scope.get("route")
        # The template (never the path: ids are no labels); unmatched paths share one label.
        template = route.path if route is not None else (PATH if scope["path"] == PATH else "unmatched")
        method = scope["method"] if scope["method"] in _METHODS else "other"
        metrics.request_done(template, method, status, elapsed)
        if not log.isEnabledFor(logging.INFO):
            return
        agent = (scope.get("path_params") or {}).get("agent_id")
        fields = {
            "method": scope["method"],
            # The raw path stays percent-encoded: a decoded %0A could forge a text log line.
            "path": scope.get("raw_path", b"").decode("latin-1")[:200],
            "route": template,
            "status": status or None,
            "latency_ms": round(elapsed * 1000, 1),
        }
        if isinstance(agent, str) and agent.isdigit() and len(agent) < 10:
            fields["agent"] = int(agent)
        for name in _OPTIONAL_FACTS:  # only what this request has (0 tokens is a fact; False is not)
            value = getattr(facts, name)
            if value is not None and value is not False:
                fields[name] = value
        logs.access(fields["method"], fields["path"], status, fields["latency_ms"], fields)


_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
_OPTIONAL_FACTS = (
    "model", "ttft_ms", "prompt_tokens", "completion_tokens", "idempotent", "replayed", "client_disconnected",
    "traceparent",
)
_TRACEPARENT = re.compile(rb"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def accepted_traceparent(value: bytes | None) -> str | None:
    """A W3C `traceparent` (version-traceid-parentid-flags, lowercase hex), else None: anything
    else is ignored rather than written to a log line."""
    if value is None or not _TRACEPARENT.fullmatch(value.strip()):
        return None
    return value.strip().decode("ascii")
