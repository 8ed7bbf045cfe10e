"""The contract's error codes as exceptions, one class per code; the one body type they become
(in a JSON envelope or an in-stream error event); and the one mapping from the store's and the
backends' plain exceptions to them. Data only: no HTTP framework here (`api/http.py` answers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import msgspec
from msgspec import UNSET, UnsetType

from backends.base import BackendError, ProviderTimeout
from chatspark.store.errors import NotReplicated, StoreUnavailable



class ApiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "Something went wrong on our side."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: ErrorDetails | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.headers = dict(headers) if headers else {}
        super().__init__(self.message)

    def body(self) -> ErrorBody:
        return ErrorBody(
            code=self.code, message=self.message, retryable=self.retryable, details=self.details or UNSET
        )

    def to_json(self) -> bytes:
        """The envelope: `{"error": {...}}`."""
        return _encoder.encode(ErrorEnvelope(error=self.body()))


class ApiKeyMissing(ApiError):
    status, code = 401, "API_KEY_MISSING"
    default_message = "Send your API key as 'Authorization: Bearer <key>'."


class ApiKeyInvalid(ApiError):
    status, code = 401, "API_KEY_INVALID"
    default_message = "The API key is not valid."


class ApiKeyExpired(ApiError):
    status, code = 401, "API_KEY_EXPIRED"
    default_message = "The API key has expired."


class ApiKeyRevoked(ApiError):
    status, code = 401, "API_KEY_REVOKED"
    default_message = "The API key has been revoked."


class ScopeInsufficient(ApiError):
    status, code = 403, "API_KEY_SCOPE_INSUFFICIENT"
    default_message = "The API key lacks the scope this endpoint needs."


class AgentAccessDenied(ApiError):
    status, code = 403, "AGENT_ACCESS_DENIED"
    default_message = "The API key may not use this agent."


class AgentNotFound(ApiError):
    status, code = 404, "AGENT_NOT_FOUND"
    default_message = "No such agent."


class ResourceNotFound(ApiError):
    status, code = 404, "RESOURCE_NOT_FOUND"
    default_message = "No such resource."


class ValidationFailed(ApiError):
    status, code = 400, "VALIDATION_ERROR"
    default_message = "The request is not valid."

    @classmethod
    def field(cls, name: str, problem: str) -> ValidationFailed:
        return cls(f"{name}: {problem}", details=ErrorDetails(fields={name: [problem]}))


class IdempotencyConflict(ApiError):
    status, code = 409, "IDEMPOTENCY_CONFLICT"
    default_message = "This Idempotency-Key was used with a different request."


class ConversationBusy(ApiError):
    status, code, retryable = 409, "CONVERSATION_BUSY", True
    default_message = "Another turn of this conversation is running."


class CreditsExhausted(ApiError):
    status, code = 402, "CREDITS_EXHAUSTED"
    default_message = "The API key's monthly message cap is reached."


class RateLimitExceeded(ApiError):
    status, code, retryable = 429, "RATE_LIMIT_EXCEEDED", True
    default_message = "Too many requests."


class PayloadTooLarge(ApiError):
    status, code = 413, "PAYLOAD_TOO_LARGE"
    default_message = "The request body is too large."


class UnsupportedMediaType(ApiError):
    status, code = 415, "UNSUPPORTED_MEDIA_TYPE"
    default_message = "Send the body as JSON, with 'Content-Type: application/json' or no Content-Type."


class MethodNotAllowed(ApiError):
    status, code = 405, "METHOD_NOT_ALLOWED"
    default_message = "This method is not allowed on this path."


class UpstreamError(ApiError):
    status, code, retryable = 502, "UPSTREAM_ERROR", True
    default_message = "The model provider failed."


class UpstreamFailedPermanently(UpstreamError):
    """The provider refused the call (bad credentials, bad request): retrying will not help."""

    retryable = False


class UpstreamTimeout(ApiError):
    status, code, retryable = 504, "UPSTREAM_TIMEOUT", True
    default_message = "The model provider did not answer in time."


class ServiceUnavailable(ApiError):
    status, code, retryable = 503, "SERVICE_UNAVAILABLE", True
    default_message = "The conversation store is unavailable; nothing was written."


class StreamingError(ApiError):
    status, code = 500, "STREAMING_ERROR"
    default_message = "The answer failed after the stream started."


class InternalError(ApiError):
    pass


# What `contract_error` knows; anything else is a bug (INTERNAL_ERROR).
KNOWN_FAILURES: tuple[type[Exception], ...] = (ApiError, StoreUnavailable, BackendError)


def contract_error(exc: BaseException) -> ApiError:
    """What a client is told about any failure: the store's and the backends' plain exceptions
    become their contract code; anything unknown is INTERNAL_ERROR."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotReplicated):
        return ServiceUnavailable("Not enough Redis replicas confirmed the write in time, so it is not acknowledged; "
                                  "retry (a chat turn with the same Idempotency-Key is stored once).")
    if isinstance(exc, StoreUnavailable):
        return ServiceUnavailable()
    if isinstance(exc, ProviderTimeout):
        return UpstreamTimeout(str(exc) or None)
    if isinstance(exc, BackendError):
        return UpstreamError(str(exc) or None) if exc.retryable else UpstreamFailedPermanently(str(exc) or None)
    return InternalError()


_encoder = msgspec.json.Encoder()


def _error_classes() -> list[type[ApiError]]:
    found, pending = [], [ApiError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


# Every contract code and its status, read from the classes above so the two cannot drift apart.
ERROR_STATUS: dict[str, int] = {cls.code: cls.status for cls in _error_classes()}
ErrorCode = Literal[tuple(sorted(ERROR_STATUS))]  # type: ignore[valid-type]


class ErrorDetails(msgspec.Struct, kw_only=True):
    fields: dict[str, list[str]] | UnsetType = UNSET  # VALIDATION_ERROR: each bad field, its problems
    cause: ErrorCode | UnsetType = UNSET  # STREAMING_ERROR: the code the JSON endpoint would have answered


class ErrorBody(msgspec.Struct, kw_only=True):
    """`error` in every error answer and in a stream's error event."""

    code: ErrorCode
    message: str
    retryable: bool  # always present: true on errors a client may retry as they are
    details: ErrorDetails | UnsetType = UNSET


class ErrorEnvelope(msgspec.Struct):
    """Every error answer, whatever its status."""

    error: ErrorBody
