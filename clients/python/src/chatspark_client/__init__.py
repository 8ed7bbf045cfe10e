"""Python client of the Chatspark HTTP API: `Chatspark` (blocking) and `AsyncChatspark` (asyncio),
typed results, one exception class per error code, retries honouring `Retry-After`, automatic
`Idempotency-Key`s, streams resumed with `Last-Event-ID`, and lists that page themselves."""

from chatspark_client._async import AsyncChatspark, AsyncChatStream, AsyncPage, AsyncPager
from chatspark_client._core import VERSION as __version__
from chatspark_client._sync import Chatspark, ChatStream, Page
from chatspark_client.errors import (
    AgentAccessDeniedError, AgentNotFoundError, ApiKeyExpiredError, ApiKeyInvalidError, ApiKeyMissingError,
    ApiKeyRevokedError, AuthenticationError, ChatsparkConnectionError, ChatsparkError, ConflictError,
    ConversationBusyError, CreditsExhaustedError, IdempotencyConflictError, InternalError, MethodNotAllowedError,
    NotFoundError, PayloadTooLargeError, PermissionDeniedError, RateLimitExceededError, ResourceNotFoundError,
    ScopeInsufficientError, ServiceUnavailableError, StreamingError, UnsupportedMediaTypeError, UpstreamError,
    UpstreamTimeoutError, ValidationError,
)
from chatspark_client.types import (
    Agent, Analytics, AnalyticsDay, ChatDelta, ChatDone, ChatEvent, ChatResponse, Conversation, ConversationSummary,
    Exchange, Feedback, Lead, Message, Source, TrainingSource, Usage, Webhook,
)

__all__ = [
    "Agent", "AgentAccessDeniedError", "AgentNotFoundError", "Analytics", "AnalyticsDay", "ApiKeyExpiredError",
    "ApiKeyInvalidError", "ApiKeyMissingError", "ApiKeyRevokedError", "AsyncChatStream", "AsyncChatspark",
    "AsyncPage", "AsyncPager", "AuthenticationError", "ChatDelta", "ChatDone", "ChatEvent", "ChatResponse", "ChatStream",
    "Chatspark", "ChatsparkConnectionError", "ChatsparkError", "ConflictError", "Conversation",
    "ConversationBusyError", "ConversationSummary", "CreditsExhaustedError", "Exchange", "Feedback",
    "IdempotencyConflictError", "InternalError", "Lead", "Message", "MethodNotAllowedError", "NotFoundError", "Page",
    "PayloadTooLargeError", "PermissionDeniedError", "RateLimitExceededError", "ResourceNotFoundError",
    "ScopeInsufficientError", "ServiceUnavailableError", "Source", "StreamingError", "TrainingSource",
    "UnsupportedMediaTypeError", "UpstreamError", "UpstreamTimeoutError", "Usage", "ValidationError", "Webhook",
    "__version__",
]
