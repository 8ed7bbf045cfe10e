"""API keys: minting, hashing, and turning an Authorization header into a checked `Principal`.

Only the SHA-256 of a key is stored; keys carry ≥ 238 random bits, so a fast hash is enough (as for
GitHub or Stripe tokens) and lookup by hash needs no per-key salt. The plain key is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import string

import msgspec

from chatspark.clock import now_ms
from chatspark.errors import (
    AgentAccessDenied,
    ApiKeyExpired,
    ApiKeyInvalid,
    ApiKeyMissing,
    ApiKeyRevoked,
    RateLimitExceeded,
    ScopeInsufficient,
)
from chatspark.config import LimitsConfig
from chatspark.store import Store
from chatspark.store.credits import CreditAccount
from chatspark.store.keys import ApiKeyRecord, KeyMode, RateState

SCOPES = (
    "chat", "agents:read", "agents:write", "conversations:read", "conversations:write", "feedback", "training",
    "leads", "analytics",
    "webhooks",
)
PREFIXES = {"live": "cs_live_", "test": "cs_test_"}
_ALPHABET = string.ascii_letters + string.digits
_SECRET_LENGTH = 40  # 40 base-62 characters ≈ 238 bits


RATE_WINDOW_MS = 60_000


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: the checked key's id, mode, scopes and the agents it may use (None: all).
    A widget visitor calls as a principal too (`chatspark/visitors.py`): no key, one agent, the
    agent's widget cap."""

    key_id: str
    mode: KeyMode
    scopes: frozenset[str]
    agents: frozenset[int] | None
    key_hash: str = ""
    monthly_cap: int = 0  # completed turns per month; 0: unlimited
    rate: RateState | None = None
    widget_agent: int | None = None  # a visitor of this agent's widget, not a key

    @property
    def credit_account(self) -> CreditAccount:
        """Whose monthly cap this caller's turns count against."""
        if self.widget_agent is not None:
            return CreditAccount("widget", str(self.widget_agent))
        return CreditAccount("key", self.key_hash)

    def headers(self) -> dict[str, str]:
        """What every authenticated response tells the caller about its key."""
        headers = {"chatspark-mode": self.mode}
        if self.rate is not None:
            headers.update(rate_headers(self.rate))
        return headers

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ScopeInsufficient(f"This endpoint needs the '{scope}' scope.")

    def require_agent(self, agent_id: int) -> None:
        if self.agents is not None and agent_id not in self.agents:
            raise AgentAccessDenied()


def hash_key(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def mint_key(
    mode: KeyMode,
    *,
    scopes: list[str] | None = None,
    agents: list[int] | None = None,
    expires_ms: int | None = None,
    name: str = "",
    rate_limit: int | None = None,
    monthly_cap: int | None = None,
) -> tuple[str, ApiKeyRecord]:
    """A new plain key and the record to store for it (the plain key is not in the record)."""
    if mode not in PREFIXES:
        raise ValueError(f"mode must be live or test, not {mode!r}")
    unknown = sorted(set(scopes or ()) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    plain = PREFIXES[mode] + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LENGTH))
    record = ApiKeyRecord(
        id="key_" + secrets.token_hex(6),
        hash=hash_key(plain),
        mode=mode,
        scopes=sorted(scopes) if scopes else None,  # None: every scope, today's and later ones
        agents=sorted(set(agents)) if agents else None,
        created=now_ms(),
        expires=expires_ms,
        name=name,
        rate_limit=rate_limit,
        monthly_cap=monthly_cap,
    )
    return plain, record


def rate_headers(rate: RateState) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(rate.limit),
        "x-ratelimit-remaining": str(rate.remaining),
        "x-ratelimit-reset": str(math.ceil(rate.reset_ms / 1000)),
    }


async def authenticate(store: Store, authorization: str | None, limits: LimitsConfig) -> Principal:
    """The principal behind an `Authorization: Bearer …` header, with this request counted against
    its rate limit (same round trip); or the contract's 401, or 429 with `Retry-After`."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiKeyMissing()
    if not token.startswith(tuple(PREFIXES.values())) or len(token) > 128:
        raise ApiKeyInvalid()
    presented = hash_key(token)
    record, rate = await store.keys.authenticate(presented, window_ms=RATE_WINDOW_MS, default_limit=limits.rate_per_minute)
    if record is None or not hmac.compare_digest(record.hash, presented):
        raise ApiKeyInvalid()
    if record.revoked is not None:
        raise ApiKeyRevoked()
    if record.expires is not None and record.expires <= now_ms() or rate is None:
        raise ApiKeyExpired()
    cap = record.monthly_cap
    if cap is None:
        cap = limits.monthly_cap_live if record.mode == "live" else limits.monthly_cap_test
    principal = Principal(
        key_id=record.id,
        mode=record.mode,
        scopes=frozenset(SCOPES if record.scopes is None else record.scopes),
        agents=None if record.agents is None else frozenset(record.agents),
        key_hash=record.hash,
        monthly_cap=cap,
        rate=rate,
    )
    if not rate.allowed:
        wait = max(math.ceil(rate.reset_ms / 1000), 1)
        raise RateLimitExceeded(
            f"This key allows {rate.limit} requests per minute.",
            headers={**principal.headers(), "retry-after": str(wait)},
        )
    return principal
