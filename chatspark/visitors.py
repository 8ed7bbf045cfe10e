"""Widget visitors: who a browser is (a signed visitor token), whether a host page vouched for its
user (identity verification), and which conversations it started (ids that carry their owner).

Everything here is checked by HMAC-SHA256 with the deployment's visitor secret (kept in Redis like
the cursor secret, cached by each replica): no lookup per request, no state per visitor.

- Token: `base64url(msgpack [version, agent, visitor id, user id, identity fingerprint, expiry]) .
  base64url(HMAC(secret, "token\\0" + body))`. The browser can read it; it cannot change it.
- A verified user's visitor id is `v_` + HMAC(secret, agent + user id): the same on every device,
  and it does not reveal the user id.
- A widget conversation id is 16 random bytes + the first 8 bytes of HMAC(secret, agent + visitor +
  those bytes), base64url (32 characters, like every conversation id): the id itself proves which
  visitor started it, so continuing or reading it costs no round trip and no extra stored field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable

import msgspec

from chatspark.agents import Agent
from chatspark.apikeys import Principal
from chatspark.errors import AgentAccessDenied, ApiKeyInvalid

TOKEN_VERSION = 1
MAX_TOKEN_CHARS = 1024
_RANDOM_BYTES, _TAG_BYTES = 16, 8  # of a widget conversation id
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class Visitor(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: int
    id: str  # "v_…"
    user_id: str | None = None  # set when the host page vouched for it (identity verification)


class _TokenBody(msgspec.Struct, array_like=True, frozen=True):
    version: int
    agent: int
    visitor: str
    user: str  # "" for an anonymous visitor
    identity: str  # fingerprint of the identity secret that verified `user` ("" if anonymous)
    expires: int  # seconds since the epoch


def identity_failed() -> AgentAccessDenied:
    return AgentAccessDenied("identity verification failed")


def identity_required() -> AgentAccessDenied:
    return AgentAccessDenied("This agent talks only to verified users: start the session with userId and hash.")


def user_hash(identity_secret: str, user_id: str) -> str:
    """What a host page's server computes for its signed-in user: hex HMAC-SHA256(secret, user id)."""
    return hmac.new(identity_secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


class Visitors:
    """Issues and checks visitor tokens and widget conversation ids for one deployment."""

    def __init__(self, load_secret: Callable[[], Awaitable[bytes]], token_days: int) -> None:
        self._load_secret = load_secret
        self._secret: bytes | None = None
        self.token_seconds = token_days * 86400

    async def _key(self) -> bytes:
        if self._secret is None:
            self._secret = await self._load_secret()
        return self._secret

    async def start(
        self, agent: Agent, token: str | None, user_id: str | None, user_hash_hex: str | None
    ) -> tuple[Visitor, str]:
        """A session: the visitor (the token's, a new one, or the verified user's) and a fresh token.
        Raises AgentAccessDenied when identity verification fails or the agent requires it."""
        key = await self._key()
        if user_id is not None or user_hash_hex is not None:
            secret = agent.identity_secret
            if user_id is None or user_hash_hex is None or secret is None or not hmac.compare_digest(
                user_hash(secret, user_id).encode(), user_hash_hex.lower().encode()
            ):
                raise identity_failed()
            visitor = Visitor(agent_id=agent.id, id=_user_visitor_id(key, agent.id, user_id), user_id=user_id)
        elif agent.require_identity:
            raise identity_required()
        else:
            # A valid anonymous token keeps its visitor; a user's token does not carry over to a
            # page that no longer vouches for that user (signed out), nor does any invalid one.
            known = self._read(key, agent, token) if token else None
            if known is None or known.user_id is not None:
                known = Visitor(agent_id=agent.id, id="v_" + secrets.token_urlsafe(16))
            visitor = known
        return visitor, self._sign(key, agent, visitor)

    async def check(self, agent: Agent, token: str | None) -> Visitor:
        """The visitor of a `Chatspark-Visitor` header, for this agent. Raises ApiKeyInvalid (missing,
        forged, expired, another agent's, or its user verified with a secret the agent no longer
        has) or AgentAccessDenied (the agent requires a verified user)."""
        visitor = self._read(await self._key(), agent, token) if token else None
        if visitor is None:
            raise ApiKeyInvalid(f"A visitor token is required: POST /api/v1/widget/{agent.id}/session first.")
        if agent.require_identity and visitor.user_id is None:
            raise identity_required()
        return visitor

    async def conversations(self, visitor: Visitor) -> VisitorConversations:
        return VisitorConversations(await self._key(), visitor)

    def _sign(self, key: bytes, agent: Agent, visitor: Visitor) -> str:
        body = msgspec.msgpack.encode(_TokenBody(
            version=TOKEN_VERSION,
            agent=agent.id,
            visitor=visitor.id,
            user=visitor.user_id or "",
            identity=_fingerprint(agent.identity_secret) if visitor.user_id is not None else "",
            expires=int(time.time()) + self.token_seconds,
        ))
        return f"{_b64(body)}.{_b64(_mac(key, b'token', body))}"

    def _read(self, key: bytes, agent: Agent, token: str) -> Visitor | None:
        if len(token) > MAX_TOKEN_CHARS:
            return None
        encoded_body, _, encoded_tag = token.partition(".")
        try:
            body, tag = _unb64(encoded_body), _unb64(encoded_tag)
        except (ValueError, binascii.Error):
            return None
        if not hmac.compare_digest(tag, _mac(key, b"token", body)):
            return None
        try:
            claims = msgspec.msgpack.decode(body, type=_TokenBody)
        except msgspec.DecodeError:
            return None  # signed by us, yet not a body this version reads
        if claims.version != TOKEN_VERSION or claims.agent != agent.id or claims.expires <= time.time():
            return None
        if claims.user and (agent.identity_secret is None or claims.identity != _fingerprint(agent.identity_secret)):
            return None  # the secret that verified this user was removed or rotated: verify again
        return Visitor(agent_id=agent.id, id=claims.visitor, user_id=claims.user or None)


class VisitorConversations:
    """Names a visitor's new conversations and recognises them, without a lookup."""

    def __init__(self, key: bytes, visitor: Visitor) -> None:
        self._key = key
        self._owner = f"{visitor.agent_id}\0{visitor.id}".encode()

    def new_id(self) -> str:
        random = secrets.token_bytes(_RANDOM_BYTES)
        return _b64(random + self._tag(random))

    def owns(self, conversation_id: str) -> bool:
        if len(conversation_id) != 32:
            return False
        try:
            raw = _unb64(conversation_id)
        except (ValueError, binascii.Error):
            return False
        random, tag = raw[:_RANDOM_BYTES], raw[_RANDOM_BYTES:]
        return len(raw) == _RANDOM_BYTES + _TAG_BYTES and hmac.compare_digest(tag, self._tag(random))

    def _tag(self, random: bytes) -> bytes:
        return _mac(self._key, b"conversation", self._owner + b"\0" + random)[:_TAG_BYTES]


def visitor_principal(visitor: Visitor, agent: Agent) -> Principal:
    """The caller of a widget turn: this agent only, the chat scope, the agent's widget cap;
    Idempotency-Keys are scoped to the visitor."""
    return Principal(
        key_id=f"widget:{agent.id}:{visitor.id}",
        mode="live",
        scopes=frozenset({"chat"}),
        agents=frozenset({agent.id}),
        monthly_cap=agent.widget_monthly_cap,
        widget_agent=agent.id,
    )


def _user_visitor_id(key: bytes, agent_id: int, user_id: str) -> str:
    return "v_" + _b64(_mac(key, b"user", f"{agent_id}\0{user_id}".encode())[:16])


def _fingerprint(identity_secret: str | None) -> str:
    return "" if identity_secret is None else hashlib.sha256(identity_secret.encode()).hexdigest()[:16]


def _mac(key: bytes, purpose: bytes, message: bytes) -> bytes:
    return hmac.new(key, purpose + b"\0" + message, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    """Strict: the decoder would otherwise skip stray characters, read `+`/`/` like `-`/`_`, and
    ignore a last character's unused bits (so several strings would carry one signed token)."""
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:
        raise ValueError("not canonical base64url")
    return raw
