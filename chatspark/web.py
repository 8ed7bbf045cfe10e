"""The ASGI app: routes, the lifespan that builds the services, and errors mapped to the envelope."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from chatspark import errors
from chatspark.agent_registry import AgentRegistry
from chatspark.agent_store import AgentStore
from chatspark.api import agents as agents_api
from chatspark.api import conversations as conversations_api
from chatspark.api.chat import chat
from chatspark.api.health import health
from chatspark.api.openapi import openapi
from chatspark.apikeys import mint_key
from chatspark.chat import Chat
from chatspark.clock import now_ms
from chatspark.config import Config
from chatspark.conversations import Conversations
from chatspark.credits import Credits
from chatspark.draining import Drain
from chatspark.idempotent_turns import IdempotentTurns
from chatspark.leases import LeaseKeeper
from chatspark.models import ModelRouter
from chatspark.pagination import Cursors
from chatspark.request_context import RequestContext
from chatspark.services import Services
from chatspark.store import Store, open_store
from chatspark.turn_journal import TurnJournal

log = logging.getLogger("chatspark")

DEV_KEY_HOURS = 24
Handler = Callable[[Request], Awaitable[ASGIApp]]
CONVERSATION = "/api/v1/agents/{agent_id}/conversations/{conversation_id}"


def create_app(
    config: Config,
    *,
    allow_embedded: bool = False,
    embedded_server: Any | None = None,
    dev_key: bool = False,
) -> ASGIApp:
    """`allow_embedded`: without a reachable Redis, fall back to the in-process store (laptops only).
    `dev_key`: mint and print a test key with every scope at start (what `make run` shows)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(config.store, allow_embedded=allow_embedded, embedded_server=embedded_server)
        models = ModelRouter.load(config.models)
        await models.warmup()
        agents = AgentRegistry(AgentStore(store), config.models, seed=config.agents)
        seeded = await agents.seed()
        cursors = Cursors(store.cursor_secret)
        leases = LeaseKeeper(store, config.store.lease_seconds)
        chat = Chat(config, store, models, agents, leases, Credits(store, config.limits))
        journal = TurnJournal(
            store, ttl_seconds=config.store.idempotency_seconds, lease_seconds=config.store.lease_seconds
        )
        # Lives as long as the app: the lease keeper, and turns that must finish even if their
        # client left (Idempotency-Key). Leaving it waits for those turns.
        async with anyio.create_task_group() as tasks:
            app.state.services = Services(
                config=config,
                store=store,
                models=models,
                chat=chat,
                agents=agents,
                conversations=Conversations(store, cursors),
                cursors=cursors,
                idempotent_turns=IdempotentTurns(chat, journal, leases, tasks),
            )
            if dev_key:
                await _print_dev_key(store, config.server.port)
            log.info("ready: %d configured agents (%d new in the store), models %s, store %s", len(config.agents),
                     seeded, ", ".join(config.models), "EMBEDDED" if store.embedded else "redis")
            keeper = anyio.CancelScope()

            async def keep_leases() -> None:
                with keeper:
                    await leases.run()

            tasks.start_soon(keep_leases)
            drain.install()
            try:
                yield
            finally:
                # Running turns (in this group) finish before the keeper stops renewing their leases.
                await app.state.services.idempotent_turns.idle()
                keeper.cancel()
        await models.aclose()
        await store.aclose()

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
        ],
        lifespan=lifespan,
        exception_handlers={
            errors.ApiError: _api_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_left,
            Exception: _unexpected_error,
        },
    )
    # A trailing slash is a 404 like any unknown path, not Starlette's redirect: that 307 has an
    # empty body instead of the envelope, and its Location is built from the client's Host header.
    app.router.redirect_slashes = False
    drain = Drain(app, config.server.drain_seconds)
    return RequestContext(drain)


def _resource(path: str, **handlers: Handler) -> Route:
    """One route per path, dispatching on the method. Starlette answers a wrong method with the
    `Allow` of the first route whose path matched, so a route per method would list only its own."""
    if "GET" in handlers:
        handlers["HEAD"] = handlers["GET"]

    async def dispatch(request: Request) -> ASGIApp:
        return await handlers[request.method](request)

    return Route(path, dispatch, methods=list(handlers))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ApiError)
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405/413 in the contract's envelope."""
    assert isinstance(exc, HTTPException)
    mapped: errors.ApiError
    if exc.status_code == 404:
        mapped = errors.ResourceNotFound("No such route.")
    elif exc.status_code == 405:
        # Starlette joins a set: sorted, every replica sends the same header.
        allowed = sorted(exc.headers["Allow"].split(", ")) if exc.headers else []
        mapped = errors.MethodNotAllowed(headers={"Allow": ", ".join(allowed)})
    elif exc.status_code == 413:
        mapped = errors.PayloadTooLarge()
    elif exc.status_code == 400:
        mapped = errors.ValidationFailed(str(exc.detail))
    else:
        mapped = errors.InternalError()
    return await _api_error(request, mapped)


async def _client_left(request: Request, exc: Exception) -> None:
    """A client that closed its connection while sending its body: nobody is left to answer, and
    nothing on our side failed. No response (the access line shows `-`), no traceback."""
    log.info("client disconnected while sending its request body")


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # Logged by RequestContext, which sees the exception Starlette re-raises after this answer.
    return await _api_error(request, errors.InternalError())


async def _print_dev_key(store: Store, port: int) -> None:
    # No monthly cap: a laptop session should not run into the test-mode default of 100 turns.
    plain, record = mint_key(
        "test", expires_ms=now_ms() + DEV_KEY_HOURS * 3600 * 1000, name="dev key (make run)", monthly_cap=0
    )
    await store.put_api_key(record)
    # Printed, not logged: a key must never reach a log pipeline.
    print(
        f"\n  Dev API key (test mode, every scope, expires in {DEV_KEY_HOURS} h):\n\n    {plain}\n\n"
        f"  Try: curl -s localhost:{port}/api/v1/agents/1/chat -H 'Authorization: Bearer {plain}' "
        "-H 'content-type: application/json' -d '{\"message\": \"When are you open?\"}'\n",
        file=sys.stdout,
        flush=True,
    )


def app_from_environment() -> ASGIApp:
    """The app as `uvicorn app:app` and each `serve --workers N` process build it: config from
    `$CHATSPARK_CONFIG` (else ./config.toml) and the environment."""
    from chatspark import logs
    from chatspark.config import load_config

    config = load_config()
    logs.configure(config.server.log_level)
    return create_app(config)
