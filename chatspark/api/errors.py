"""The one place an exception becomes an HTTP answer: the contract's envelope with its status."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from chatspark import errors, metrics

log = logging.getLogger("chatspark")


def error_response(error: errors.ApiError, headers: Mapping[str, str] | None = None) -> Response:
    """The envelope: the error's status, its own headers and any `headers`."""
    metrics.HTTP_ERRORS.labels(error.code).inc()
    return Response(
        error.to_json(), status_code=error.status, headers={**error.headers, **(headers or {})},
        media_type="application/json",
    )


async def on_known_error(request: Request, exc: Exception) -> Response:
    """Ours, the store's and the backends' exceptions map to their contract code
    (`errors.contract_error`); Starlette's own 404/405/413/400 to theirs."""
    error = _starlette_error(exc) if isinstance(exc, HTTPException) else errors.contract_error(exc)
    if error.status >= 500:
        log.warning("%s: %s", error.code, error.message)
    return error_response(error)


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    # Logged with its traceback by RequestContext, which sees Starlette re-raise it after this answer.
    return error_response(errors.InternalError())


async def on_client_left(request: Request, exc: Exception) -> None:
    """A client that closed its connection while sending its body: nobody is left to answer, and
    nothing on our side failed. No response (the access line shows `-`), no traceback."""
    log.info("client disconnected while sending its request body")


# Starlette picks a handler by the exception's class; `Exception` is its last resort (a bug).
HANDLERS = {
    **{kind: on_known_error for kind in (*errors.KNOWN_FAILURES, HTTPException)},
    ClientDisconnect: on_client_left,
    Exception: on_unexpected_error,
}


def _starlette_error(exc: HTTPException) -> errors.ApiError:
    if exc.status_code == 404:
        return errors.ResourceNotFound("No such route.")
    if exc.status_code == 405:
        # Starlette joins a set: sorted, every replica sends the same header.
        allowed = sorted(exc.headers["Allow"].split(", ")) if exc.headers else []
        return errors.MethodNotAllowed(headers={"Allow": ", ".join(allowed)})
    if exc.status_code == 413:
        return errors.PayloadTooLarge()
    if exc.status_code == 400:
        return errors.ValidationFailed(str(exc.detail))
    return errors.InternalError()
