"""The ASGI app: routes, the lifespan that builds the services, and errors mapped to the envelope."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from chatspark.agent_registry import AgentRegistry
from chatspark.api import agents as agents_api
from chatspark.api import conversations as conversations_api
from chatspark.api import analytics as analytics_api
from chatspark.api import leads as leads_api
from chatspark.api import training as training_api
from chatspark.api import widget as widget_api
from chatspark.api import widget_assets
from chatspark.api.cors import preflight
from chatspark.api import webhooks as webhooks_api
from chatspark.api.chat import chat
from chatspark.api.errors import HANDLERS
from chatspark.api.health import health
from chatspark.api.metrics import MetricsEndpoint
from chatspark.api.openapi import openapi
from chatspark.api import openai_compat
from chatspark.apikeys import hash_key, mint_key
from chatspark.clock import now_ms
from chatspark.config import Config
from chatspark.conversations import Conversations
from chatspark.credits import Credits
from chatspark.draining import Drain
from chatspark.embeddings import EmbedderRouter
from chatspark.idempotent_turns import IdempotentTurns
from chatspark.ingestion import Ingestion
from chatspark.knowledge.retrieval import Retriever
from chatspark.analytics import Analytics
from chatspark.leads import Leads
from chatspark.leases import LeaseKeeper
from chatspark.models import ModelRouter
from chatspark.pagination import Cursors
from chatspark.request_context import RequestContext
from chatspark.services import Services
from chatspark import errors, metrics
from chatspark.store import Store, open_store, safe_url
from chatspark.store.errors import StoreUnavailable
from chatspark.training import Training
from chatspark.turn import Turns
from chatspark.visitors import Visitors
from chatspark.widget_limits import WidgetLimits
from chatspark.webhook_delivery import WebhookDelivery
from chatspark.webhooks import Webhooks

log = logging.getLogger("chatspark")

DEV_KEY_HOURS = 24
# Where `make run` keeps its dev key between starts (the working directory; git ignores it).
DEV_KEY_FILE = Path(".chatspark-dev-key")
Handler = Callable[[Request], Awaitable[ASGIApp]]
CONVERSATION = "/api/v1/agents/{agent_id}/conversations/{conversation_id}"
TRAINING = "/api/v1/agents/{agent_id}/training"
WIDGET = "/api/v1/widget/{agent_id}"
LEADS = "/api/v1/agents/{agent_id}/leads"
WEBHOOK = "/api/v1/webhooks/{webhook_id}"


def create_app(config: Config, *, fall_back_to_memory: bool = False, dev_key: bool = False) -> ASGIApp:
    """`fall_back_to_memory`: without a reachable Redis, use the embedded in-process store (laptops
    only). `dev_key`: mint and print a test key with every scope at start (what `make run` shows)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(config.store, fall_back_to_memory=fall_back_to_memory)
        models = ModelRouter(config.models)
        agents = AgentRegistry(store.agents, config.models, seed=config.agents)
        seeded = await agents.seed()
        cursors = Cursors(store.cursor_secret)
        leases = LeaseKeeper(store.leases, config.store.lease_seconds)
        embedders = EmbedderRouter(config.embedders, config.knowledge.embedder)
        retriever = Retriever(store, embedders, config.knowledge)
        turns = Turns(config, store, models, agents, leases, Credits(store, config.limits), retriever)
        ingestion = Ingestion(store, embedders, config.knowledge)
        # `turns` lives as long as the app: turns that must finish even if their client left
        # (Idempotency-Key); leaving it waits for them. `background` holds what runs until shutdown
        # (lease renewal, ingestion, warming and seeding) and is cancelled once those turns are done:
        # an unfinished ingestion job is taken over by another replica once idle.
        async with anyio.create_task_group() as turns_group, anyio.create_task_group() as background:
            app.state.services = Services(
                config=config,
                store=store,
                models=models,
                turns=turns,
                agents=agents,
                conversations=Conversations(store, cursors),
                cursors=cursors,
                idempotent_turns=IdempotentTurns(turns, store.journal, leases, turns_group),
                training=Training(store, cursors, config.knowledge),
                visitors=Visitors(store.visitor_secret, config.widget.visitor_token_days),
                widget_limits=WidgetLimits(store, config.widget),
                leads=Leads(store, cursors, agents),
                webhooks=Webhooks(store, cursors, config.webhooks),
                analytics=Analytics(store),
            )
            if dev_key:
                await _print_dev_key(store, config.server.port)
            log.info("ready: %d configured agents (%d new in the store), models %s, store %s", len(config.agents),
                     seeded, ", ".join(config.models),
                     "EMBEDDED (in this process only)" if store.embedded else safe_url(store.config.url))
            background.start_soon(leases.run)
            background.start_soon(_warm, models)  # litellm's import (seconds) does not delay readiness
            background.start_soon(ingestion.run)
            background.start_soon(WebhookDelivery(store, config.webhooks).run)
            background.start_soon(_seed_knowledge, app.state.services.training, config)
            drain.install()
            try:
                yield
            finally:
                # Running turns finish before the keeper stops renewing their leases.
                await app.state.services.idempotent_turns.idle()
                background.cancel_scope.cancel()
        await models.aclose()
        await embedders.aclose()
        await store.aclose()
        metrics.process_exited(os.getpid())  # with --workers N: this worker's open streams leave the sums

    app = Starlette(
        routes=[
            _resource("/api/v1/health", GET=health),
            _resource("/openapi.json", GET=openapi),
            _resource("/api/v1/agents", GET=agents_api.list_agents, POST=agents_api.create_agent),
            _resource(
                "/api/v1/agents/{agent_id}",
                GET=agents_api.get_agent,
                PATCH=agents_api.update_agent,
                DELETE=agents_api.delete_agent,
            ),
            _resource("/api/v1/agents/{agent_id}/chat", POST=chat),
            _resource(CONVERSATION, GET=conversations_api.get_conversation, DELETE=conversations_api.delete_conversation),
            _resource("/api/v1/agents/{agent_id}/conversations", GET=conversations_api.list_conversations),
            _resource(f"{CONVERSATION}/messages", GET=conversations_api.list_messages),
            _resource(f"{CONVERSATION}/messages/{{message_id}}/feedback", POST=conversations_api.rate_message),
            _resource(TRAINING, GET=training_api.list_sources, POST=training_api.add_source),
            _resource(f"{TRAINING}/{{training_id}}", GET=training_api.get_source, DELETE=training_api.delete_source),
            # What a browser loads, no auth (widget_assets.PATHS; not in the OpenAPI document).
            _resource("/widget.js", GET=widget_assets.widget_js),
            _resource("/demo", GET=widget_assets.demo),
            _resource("/", GET=widget_assets.root),
            # Browsers, without a key: each path answers its CORS preflight.
            _resource(f"{WIDGET}/session", POST=widget_api.session, OPTIONS=preflight),
            _resource(f"{WIDGET}/chat", POST=widget_api.chat, OPTIONS=preflight),
            _resource(f"{WIDGET}/conversations/{{conversation_id}}/messages", GET=widget_api.list_messages,
                      OPTIONS=preflight),
            _resource(f"{WIDGET}/leads", POST=widget_api.create_lead, OPTIONS=preflight),
            _resource(LEADS, GET=leads_api.list_leads, POST=leads_api.create_lead),
            _resource("/api/v1/agents/{agent_id}/analytics", GET=analytics_api.agent_analytics),
            _resource(f"{LEADS}/{{lead_id}}", DELETE=leads_api.delete_lead),
            _resource("/api/v1/webhooks", GET=webhooks_api.list_webhooks, POST=webhooks_api.create_webhook),
            _resource(WEBHOOK, GET=webhooks_api.get_webhook, PATCH=webhooks_api.update_webhook,
                      DELETE=webhooks_api.delete_webhook),
            _resource(f"{WEBHOOK}/deliveries", GET=webhooks_api.list_deliveries),
            # OpenAI's SDKs with `base_url=<service>/v1` (chatspark/api/openai_compat.py).
            _resource("/v1/chat/completions", POST=openai_compat.chat_completions),
            _resource("/v1/models", GET=openai_compat.list_models),
        ],
        lifespan=lifespan,
        exception_handlers=HANDLERS,
    )
    # A trailing slash is a 404 like any unknown path, not Starlette's redirect: that 307 has an
    # empty body instead of the envelope, and its Location is built from the client's Host header.
    app.router.redirect_slashes = False
    inner: ASGIApp = app
    if config.server.trusted_proxies:
        # The client is the address the trusted gateway saw (the rightmost untrusted X-Forwarded-For
        # entry, so a client cannot put one of its choosing first); from any other peer the headers
        # are ignored. `serve` switches uvicorn's own copy off (it trusts every loopback peer).
        inner = ProxyHeadersMiddleware(app, trusted_hosts=config.server.trusted_proxies)  # type: ignore[arg-type]
    drain = Drain(inner, config.server.drain_seconds)
    return RequestContext(drain, MetricsEndpoint(config.metrics))


async def _seed_knowledge(training: Training, config: Config) -> None:
    """Configured sources, added in the background (indexing them never delays readiness)."""
    while True:
        try:
            await training.seed(config.knowledge.seed, Path(config.source).parent)
            return
        except StoreUnavailable:
            await anyio.sleep(5)
        except (OSError, errors.ApiError) as exc:
            log.error("could not seed the configured knowledge: %s", exc)
            return


async def _warm(models: ModelRouter) -> None:
    try:
        await models.warm()
    except Exception:  # a turn on that backend will try again and answer the error
        log.exception("could not load a model backend")


def _resource(path: str, **handlers: Handler) -> Route:
    """One route per path, dispatching on the method. Starlette answers a wrong method with the
    `Allow` of the first route whose path matched, so a route per method would list only its own."""
    if "GET" in handlers:
        handlers["HEAD"] = handlers["GET"]

    async def dispatch(request: Request) -> ASGIApp:
        return await handlers[request.method](request)

    return Route(path, dispatch, methods=list(handlers))


async def _print_dev_key(store: Store, port: int) -> None:
    plain, reused = await _dev_key(store)
    # Printed, not logged: a key must never reach a log pipeline.
    print(
        f"\n  Dev API key (test mode, every scope, {'still valid, reused' if reused else 'new'}; expires within "
        f"{DEV_KEY_HOURS} h; kept in {DEV_KEY_FILE}):\n\n    {plain}\n\n"
        f"  Try: curl -s localhost:{port}/api/v1/agents/1/chat -H 'Authorization: Bearer {plain}' "
        "-H 'content-type: application/json' -d '{\"message\": \"When are you open?\"}'\n"
        f"  Or chat in the widget: http://localhost:{port}/demo\n",
        file=sys.stdout,
        flush=True,
    )


async def _dev_key(store: Store) -> tuple[str, bool]:
    """The dev key of the last `make run` if the store still holds it for another hour (so restarts
    keep one key instead of minting one each), else a new one."""
    try:
        plain = DEV_KEY_FILE.read_text().strip()
    except OSError:
        plain = ""
    if plain:
        record = await store.keys.get(hash_key(plain))
        if record is not None and record.revoked is None and (record.expires or 0) > now_ms() + 3600 * 1000:
            return plain, True
    # No monthly cap: a laptop session should not run into the test-mode default of 100 turns.
    plain, record = mint_key(
        "test", expires_ms=now_ms() + DEV_KEY_HOURS * 3600 * 1000, name="dev key (make run)", monthly_cap=0
    )
    await store.keys.put(record)
    try:
        DEV_KEY_FILE.touch(mode=0o600)
        DEV_KEY_FILE.write_text(plain + "\n")
    except OSError:
        pass  # a read-only checkout: the key is printed anyway
    return plain, False


def app_from_environment() -> ASGIApp:
    """The app as `uvicorn app:app` and each `serve --workers N` process build it: config from
    `$CHATSPARK_CONFIG` (else ./config.toml) and the environment."""
    from chatspark import logs
    from chatspark.config import load_config

    config = load_config()
    logs.configure(config.server.log_level, config.server.log_format)
    # RequestContext writes the one access line per request (with its request id); under plain
    # `uvicorn app:app` uvicorn's own access log would repeat every request.
    logging.getLogger("uvicorn.access").disabled = True
    return create_app(config)
