"""The one typed configuration: `config.toml` (or `$CHATSPARK_CONFIG`) plus environment overrides.

Loaded once at start and passed in; nothing deeper reads files or the environment for settings.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from backends import KNOWN as KNOWN_BACKENDS
from backends.base import ModelSettings
from backends.embedders.base import EmbedderSettings
from chatspark.agents import Agent
from chatspark.store.config import StoreConfig

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config.toml"

Seconds = Annotated[float, Meta(gt=0)]
PositiveInt = Annotated[int, Meta(ge=1)]


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    workers: PositiveInt = 1
    max_body_bytes: PositiveInt = 1_048_576
    max_message_chars: PositiveInt = 32_000
    # A `: ping` comment goes out this often while a stream's model is silent.
    ping_seconds: Seconds = 15.0
    # After SIGTERM: new requests get 503 while running ones get up to this long to finish.
    drain_seconds: Annotated[float, Meta(ge=0)] = 30.0
    log_level: str = "info"
    # "text" (a line for people) or "json" (one object per line for a log pipeline); `serve
    # --log-format` and CHATSPARK_LOG_FORMAT override it.
    log_format: Literal["text", "json"] = "text"
    # SO_SNDBUF of every client connection, in bytes (Linux doubles it). 0 leaves it to the kernel,
    # which grows the buffer of a client that stops reading to megabytes (net.ipv4.tcp_wmem); with a
    # small one, such a client holds up its own stream (and its model call) after kilobytes.
    socket_send_buffer: Annotated[int, Meta(ge=0)] = 0
    # Peers (addresses or CIDR networks) whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed:
    # the gateway's address (`["127.0.0.1"]` for an nginx on the same host). Empty (the default):
    # the connection's peer is the client, whatever headers it sends. Used for every limit by client
    # address (the widget's), and the scheme the demo page's same-origin rule sees.
    trusted_proxies: list[str] = []


class LimitsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-key limits, exact across replicas (counted in Redis). A key may override both."""

    # Requests per minute per key (every authenticated request counts), and named presets for
    # `keys create --rate-limit <preset>`.
    rate_per_minute: PositiveInt = 60
    rate_presets: dict[str, PositiveInt] = msgspec.field(
        default_factory=lambda: {"starter": 60, "growth": 120, "scale": 300}
    )
    # Completed chat turns per key per calendar month (UTC); 0 means unlimited.
    monthly_cap_live: Annotated[int, Meta(ge=0)] = 0
    monthly_cap_test: Annotated[int, Meta(ge=0)] = 100
    cap_presets: dict[str, PositiveInt] = msgspec.field(default_factory=lambda: {"small": 25, "medium": 100, "large": 500})
    # A running turn holds one of its key's credits this long at most (a crashed replica's hold lapses).
    hold_seconds: Seconds = 600.0
    # When the store cannot count a turn against its cap: "closed" answers 503 (nothing runs
    # uncounted), "open" lets the turn run uncounted. Logged and counted either way.
    on_store_error: Literal["closed", "open"] = "closed"


class WidgetConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Browser access to public agents (the widget endpoints): limits exact across replicas."""

    # Chat turns and lead submissions per visitor, and widget requests of any kind per client
    # address (the connection's peer, or behind a gateway listed in `server.trusted_proxies` the
    # address it forwards), per sliding minute.
    visitor_rate_per_minute: PositiveInt = 20
    address_rate_per_minute: PositiveInt = 120
    visitor_token_days: PositiveInt = 365


class SeedSource(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A text source added to an agent once, at the first start that sees it (like seeded agents:
    later edits and deletions through the API win)."""

    agent: PositiveInt
    source: str
    file: str  # relative to the config file's folder


class KnowledgeConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Training sources and retrieval. Sizes in "tokens" use the prompt's bound (UTF-8 bytes + 4 per
    message, see prompt.py): never below a real tokenizer's count, so budgets always hold."""

    # The `[embedders.<name>]` agents use unless they name one; the shipped one is offline.
    embedder: str = "offline"
    # Fetching pages and websites: a URL resolving to loopback, private, link-local or metadata
    # addresses is refused unless this is true (tests only).
    allow_private_urls: bool = False
    max_text_bytes: PositiveInt = 2_000_000  # a `text` source's `data`
    fetch_timeout_seconds: Seconds = 10.0
    max_page_bytes: PositiveInt = 5_000_000
    max_pages: PositiveInt = 50  # per `website` source
    max_depth: Annotated[int, Meta(ge=0, le=10)] = 3  # links followed from the start page
    user_agent: str = "ChatsparkBot/1.0 (+https://github.com/chatspark)"
    chunk_tokens: PositiveInt = 800
    chunk_overlap_tokens: Annotated[int, Meta(ge=0)] = 80
    top_k: PositiveInt = 5
    # Passages sent with a turn, separate from the history budget; both fit the model's context.
    max_knowledge_tokens: PositiveInt = 4_000
    # Ingestion: jobs per replica at once, and how long a job may sit unacknowledged with a dead
    # worker before another replica takes it over.
    worker_concurrency: PositiveInt = 2
    claim_idle_seconds: Seconds = 60.0
    # Each replica's in-memory indexes (rebuilt from Redis when an agent's knowledge changes).
    index_cache_bytes: PositiveInt = 256 * 1024 * 1024
    seed: list[SeedSource] = []


class WebhooksConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Webhook deliveries (`chatspark/webhook_delivery.py`)."""

    # Receivers on loopback, private, link-local or metadata addresses, and plain http (test keys
    # only), are refused unless this is true (tests only). Checked at registration and at delivery.
    allow_private_urls: bool = False
    # A failed attempt (non-2xx, timeout, refused) is retried after each of these, ±20 % jitter.
    retry_seconds: list[Seconds] = msgspec.field(default_factory=lambda: [10.0, 60.0, 300.0])
    timeout_seconds: Seconds = 10.0  # per attempt: connect, send, answer
    # Attempts in flight per replica, and per webhook per replica (a slow receiver fills only its own).
    concurrency: PositiveInt = 64
    per_webhook_concurrency: PositiveInt = 8
    # A webhook whose deliveries failed (every retry spent) this many times in a row is deactivated.
    deactivate_after: PositiveInt = 20
    # A delivery claimed by a replica that went quiet this long is taken over by another.
    claim_idle_seconds: Seconds = 60.0
    # Delivery records (status, attempts, last status code) are kept this long for GET …/deliveries.
    keep_deliveries_seconds: PositiveInt = 7 * 24 * 3600
    # How often expired conversations are looked for (by one replica at a time) and reported as
    # `conversation.ended` (expired): the event comes at most about this long after the expiry.
    expired_sweep_seconds: Seconds = 10.0


class MetricsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """GET /metrics (Prometheus). Off unless a token is configured or a metrics port is set."""

    # The SHA-256 (hex) of the bearer token a scraper sends (`chatspark metrics-token` makes one).
    # Set: /metrics answers that token on the API port. Empty: /metrics is not on the API port.
    # CHATSPARK_METRICS_TOKEN_SHA256 overrides it.
    token_sha256: Annotated[str, Meta(pattern="^([0-9a-f]{64})?$")] = ""
    # A port of its own that serves /metrics only (`chatspark serve`; 0: none). It needs no token
    # unless one is set: bind it where only the scraper reaches (`host`).
    port: Annotated[int, Meta(ge=0, le=65535)] = 0
    host: str = "127.0.0.1"


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    knowledge: KnowledgeConfig = msgspec.field(default_factory=KnowledgeConfig)
    widget: WidgetConfig = msgspec.field(default_factory=WidgetConfig)
    webhooks: WebhooksConfig = msgspec.field(default_factory=WebhooksConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    models: dict[str, ModelSettings] = {}
    embedders: dict[str, EmbedderSettings] = msgspec.field(
        default_factory=lambda: {"offline": EmbedderSettings(name="offline")}
    )
    agents: list[Agent] = []
    default_temperature: Annotated[float, Meta(ge=0, le=2)] = 0.2
    source: str = ""  # where it was loaded from, for the start-up banner


class ConfigError(ValueError):
    pass


def load_config(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    chosen = Path(path or env.get("CHATSPARK_CONFIG") or DEFAULT_PATH)
    try:
        raw = msgspec.toml.decode(chosen.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {chosen}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{chosen}: {exc}") from None
    # A model's (or embedder's) name is its table key; copy it in so each entry is self-contained.
    for table in ("models", "embedders"):
        for name, entry in (raw.get(table) or {}).items():
            if isinstance(entry, dict):
                entry["name"] = name
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{chosen}: {exc}") from None
    config = _apply_environment(config, env)
    _check(config)
    return msgspec.structs.replace(config, source=str(chosen))


def _apply_environment(config: Config, env: os._Environ[str] | dict[str, str]) -> Config:
    store, server, metrics = config.store, config.server, config.metrics
    if env.get("CHATSPARK_LOG_FORMAT"):
        if env["CHATSPARK_LOG_FORMAT"] not in ("text", "json"):
            raise ConfigError("CHATSPARK_LOG_FORMAT must be text or json")
        server = msgspec.structs.replace(server, log_format=env["CHATSPARK_LOG_FORMAT"])
    if env.get("CHATSPARK_METRICS_TOKEN_SHA256"):
        digest = env["CHATSPARK_METRICS_TOKEN_SHA256"].strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError("CHATSPARK_METRICS_TOKEN_SHA256 must be a SHA-256 in hex (64 characters)")
        metrics = msgspec.structs.replace(metrics, token_sha256=digest)
    if env.get("REDIS_URL"):
        store = msgspec.structs.replace(store, url=env["REDIS_URL"])
    if env.get("CHATSPARK_REDIS_PREFIX"):
        store = msgspec.structs.replace(store, prefix=env["CHATSPARK_REDIS_PREFIX"])
    if env.get("CHATSPARK_TRUSTED_PROXIES"):  # comma-separated addresses or networks
        proxies = [p.strip() for p in env["CHATSPARK_TRUSTED_PROXIES"].split(",") if p.strip()]
        server = msgspec.structs.replace(server, trusted_proxies=proxies)
    for variable, target, field in (
        ("CHATSPARK_PING_SECONDS", "server", "ping_seconds"),
        ("CHATSPARK_DRAIN_SECONDS", "server", "drain_seconds"),
        ("CHATSPARK_LEASE_SECONDS", "store", "lease_seconds"),
    ):
        if not env.get(variable):
            continue
        try:
            seconds = float(env[variable])
        except ValueError:
            raise ConfigError(f"{variable} must be a number of seconds") from None
        if seconds <= 0 and field != "drain_seconds" or seconds < 0:
            raise ConfigError(f"{variable} must be positive")
        if target == "server":
            server = msgspec.structs.replace(server, **{field: seconds})
        else:
            store = msgspec.structs.replace(store, **{field: seconds})
    return msgspec.structs.replace(config, store=store, server=server, metrics=metrics)


def _check(config: Config) -> None:
    if config.store.wait_replicas < 0:
        raise ConfigError("[store] wait_replicas must be 0 (no waiting) or more")
    if config.metrics.port and config.metrics.port == config.server.port:
        raise ConfigError(f"[metrics] port {config.metrics.port} is the API's port: pick another, or 0 for none")
    seen: set[int] = set()
    for agent in config.agents:
        if agent.id in seen:
            raise ConfigError(f"agent id {agent.id} is configured twice")
        seen.add(agent.id)
        if agent.model_name not in config.models:
            raise ConfigError(f"agent {agent.id} uses model {agent.model_name!r}, which [models] does not define")
    for proxy in config.server.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"[server] trusted_proxies: {proxy!r} is not an IP address or network") from None
    if config.knowledge.embedder not in config.embedders:
        raise ConfigError(f"[knowledge] embedder {config.knowledge.embedder!r} is not defined under [embedders]")
    for model in config.models.values():
        if model.backend not in KNOWN_BACKENDS:
            raise ConfigError(f"model {model.name!r}: unknown backend {model.backend!r} (known: {', '.join(KNOWN_BACKENDS)})")
        for fallback in model.fallbacks:
            if fallback not in config.models:
                raise ConfigError(f"model {model.name!r} falls back to {fallback!r}, which [models] does not define")
        if model.max_output_tokens >= model.context_window:
            raise ConfigError(f"model {model.name!r}: max_output_tokens must be below context_window")
