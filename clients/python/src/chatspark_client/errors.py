"""The API's error codes as exceptions: one class per contract code, under one base that carries
the code, HTTP status, message, details, whether a retry may help, and the request id."""

from __future__ import annotations

from typing import Any, ClassVar


class ChatsparkError(Exception):
    """Any failure the API reported (or, for `ChatsparkConnectionError`, the network)."""

    code: ClassVar[str] = "UNKNOWN_ERROR"
    default_status: ClassVar[int | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        retryable: bool = False,
        request_id: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]  (an unknown code on the base class)
        self.status = status if status is not None else self.default_status
        self.details = details or {}
        self.retryable = retryable
        self.request_id = request_id
        self.retry_after = retry_after  # seconds, from `Retry-After`
        self.headers = headers or {}

    @property
    def fields(self) -> dict[str, list[str]]:
        """VALIDATION_ERROR: each bad field and its problems."""
        return dict(self.details.get("fields") or {})

    def __str__(self) -> str:
        rid = f", request id {self.request_id}" if self.request_id else ""
        return f"{self.code} ({self.status}): {self.message}{rid}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r})"


class ChatsparkConnectionError(ChatsparkError):
    """The request did not get an answer: refused, reset, timed out, or a stream that could not be resumed."""

    code = "CONNECTION_ERROR"


# Families, so `except AuthenticationError` catches every 401 code.
class AuthenticationError(ChatsparkError):
    default_status = 401


class PermissionDeniedError(ChatsparkError):
    default_status = 403


class NotFoundError(ChatsparkError):
    default_status = 404


class ConflictError(ChatsparkError):
    default_status = 409


class ApiKeyMissingError(AuthenticationError):
    code = "API_KEY_MISSING"


class ApiKeyInvalidError(AuthenticationError):
    code = "API_KEY_INVALID"


class ApiKeyExpiredError(AuthenticationError):
    code = "API_KEY_EXPIRED"


class ApiKeyRevokedError(AuthenticationError):
    code = "API_KEY_REVOKED"


class ScopeInsufficientError(PermissionDeniedError):
    code = "API_KEY_SCOPE_INSUFFICIENT"


class AgentAccessDeniedError(PermissionDeniedError):
    code = "AGENT_ACCESS_DENIED"


class AgentNotFoundError(NotFoundError):
    code = "AGENT_NOT_FOUND"


class ResourceNotFoundError(NotFoundError):
    code = "RESOURCE_NOT_FOUND"


class ValidationError(ChatsparkError):
    code, default_status = "VALIDATION_ERROR", 400


class IdempotencyConflictError(ConflictError):
    code = "IDEMPOTENCY_CONFLICT"


class ConversationBusyError(ConflictError):
    code = "CONVERSATION_BUSY"


class CreditsExhaustedError(ChatsparkError):
    code, default_status = "CREDITS_EXHAUSTED", 402


class RateLimitExceededError(ChatsparkError):
    code, default_status = "RATE_LIMIT_EXCEEDED", 429


class PayloadTooLargeError(ChatsparkError):
    code, default_status = "PAYLOAD_TOO_LARGE", 413


class UnsupportedMediaTypeError(ChatsparkError):
    code, default_status = "UNSUPPORTED_MEDIA_TYPE", 415


class MethodNotAllowedError(ChatsparkError):
    code, default_status = "METHOD_NOT_ALLOWED", 405


class UpstreamError(ChatsparkError):
    code, default_status = "UPSTREAM_ERROR", 502


class UpstreamTimeoutError(ChatsparkError):
    code, default_status = "UPSTREAM_TIMEOUT", 504


class ServiceUnavailableError(ChatsparkError):
    code, default_status = "SERVICE_UNAVAILABLE", 503


class StreamingError(ChatsparkError):
    """A failure after a stream started (an in-stream error event); `cause` is the code a JSON
    request would have got."""

    code, default_status = "STREAMING_ERROR", 500

    @property
    def cause(self) -> str | None:
        return self.details.get("cause")


class InternalError(ChatsparkError):
    code, default_status = "INTERNAL_ERROR", 500


def _by_code() -> dict[str, type[ChatsparkError]]:
    found: dict[str, type[ChatsparkError]] = {}
    pending: list[type[ChatsparkError]] = [ChatsparkError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "code" in vars(cls) and cls not in (ChatsparkError, ChatsparkConnectionError):
            found[cls.code] = cls
    return found


ERRORS_BY_CODE: dict[str, type[ChatsparkError]] = _by_code()


def error_from_response(
    status: int, body: Any, headers: dict[str, str], request_id: str | None
) -> ChatsparkError:
    """The exception for an error answer: its envelope's code picks the class. A body that is not
    the envelope (a proxy's HTML page) still gives an error, by status."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"code": _CODE_BY_STATUS.get(status, "UNKNOWN_ERROR"), "message": f"HTTP {status}",
                 "retryable": status in (429, 502, 503, 504)}
    code = str(error.get("code") or "UNKNOWN_ERROR")
    cls = ERRORS_BY_CODE.get(code, ChatsparkError)
    return cls(
        str(error.get("message") or code),
        code=code,
        status=status,
        details=error.get("details") if isinstance(error.get("details"), dict) else None,
        retryable=bool(error.get("retryable", False)),
        request_id=request_id,
        retry_after=parse_retry_after(headers.get("retry-after")),
        headers=headers,
    )


def error_from_event(error: dict[str, Any], request_id: str | None) -> ChatsparkError:
    """The exception for a stream's error event (`{"code": "STREAMING_ERROR", …}`)."""
    code = str(error.get("code") or "STREAMING_ERROR")
    cls = ERRORS_BY_CODE.get(code, ChatsparkError)
    return cls(
        str(error.get("message") or code),
        code=code,
        status=cls.default_status or 500,
        details=error.get("details") if isinstance(error.get("details"), dict) else None,
        retryable=bool(error.get("retryable", False)),
        request_id=request_id,
    )


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (the API sends whole seconds; an HTTP date is not used by it)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


_CODE_BY_STATUS = {
    400: "VALIDATION_ERROR", 401: "API_KEY_INVALID", 402: "CREDITS_EXHAUSTED", 403: "API_KEY_SCOPE_INSUFFICIENT",
    404: "RESOURCE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR", 502: "UPSTREAM_ERROR", 503: "SERVICE_UNAVAILABLE",
    504: "UPSTREAM_TIMEOUT",
}
