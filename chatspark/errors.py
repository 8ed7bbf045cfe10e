"""The contract's error codes as exceptions, one class per code, and the one envelope they become."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
from starlette.responses import Response


class ApiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "Something went wrong on our side."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = dict(details) if details else None
        self.headers = dict(headers) if headers else {}
        super().__init__(self.message)

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retryable:
            body["retryable"] = True
        if self.details:
            body["details"] = self.details
        return {"error": body}

    def to_json(self) -> bytes:
        return msgspec.json.encode(self.envelope())

    def response(self, headers: Mapping[str, str] | None = None) -> Response:
        """The envelope as an HTTP response: its status, the error's own headers and any `headers`."""
        return Response(
            self.to_json(), status_code=self.status, headers={**self.headers, **(headers or {})},
            media_type="application/json",
        )


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
        return cls(f"{name}: {problem}", details={"fields": {name: [problem]}})


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
