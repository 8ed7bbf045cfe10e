"""The `chatspark` command: `serve`, and `keys create|list|revoke` against the configured Redis."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime

import msgspec

from chatspark import logs
from chatspark.apikeys import SCOPES, mint_key
from chatspark.clock import iso, now_ms
from chatspark.config import Config, ConfigError, load_config
from chatspark.store import ApiKeyRecord, Store, StoreUnavailable, open_store


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"chatspark: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.server.log_level)
    try:
        return args.run(args, config)
    except (ValueError, StoreUnavailable) as exc:
        print(f"chatspark: {_explain(exc, config)}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatspark", description="Chatspark: AI agents behind one HTTP API.")
    parser.add_argument("--config", help="config file (default: $CHATSPARK_CONFIG, else ./config.toml)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="processes (default: server.workers, 1)")
    serve.add_argument(
        "--dev",
        action="store_true",
        help="laptop mode: print a test key at start; without Redis, use the embedded store (1 worker)",
    )
    serve.set_defaults(run=_serve)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(required=True, metavar="ACTION")
    create = keys.add_parser("create", help="create a key; prints it once, as the last line")
    mode = create.add_mutually_exclusive_group()
    mode.add_argument("--live", dest="mode", action="store_const", const="live", help="a cs_live_ key (default)")
    mode.add_argument("--test", dest="mode", action="store_const", const="test", help="a cs_test_ key")
    create.add_argument("--scopes", nargs="+", help=f"default: all of {' '.join(SCOPES)}")
    create.add_argument("--agents", help="comma-separated agent ids (default: every agent)")
    create.add_argument("--expires", help="a duration (30d, 12h, 45m) or a date/time (2027-01-31)")
    create.add_argument("--name", default="", help="a label for `keys list`")
    create.add_argument(
        "--rate-limit", help="requests per minute: a number or a preset of [limits] rate_presets (default: 60)"
    )
    create.add_argument(
        "--monthly-cap",
        help="completed chat turns per calendar month (UTC): a number, a preset of [limits] cap_presets, or "
        "'unlimited' (default: the mode's, live unlimited, test 100)",
    )
    create.set_defaults(run=_keys_create, mode="live")
    keys.add_parser("list", help="list keys (never the keys themselves)").set_defaults(run=_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by its id (key_…)")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_keys_revoke)
    return parser


def _serve(args: argparse.Namespace, config: Config) -> int:
    import socket

    import uvicorn
    from starlette.types import ASGIApp
    from uvicorn.supervisors import Multiprocess

    from chatspark.web import create_app

    server = msgspec.structs.replace(
        config.server,
        host=args.host or config.server.host,
        port=args.port if args.port is not None else config.server.port,
        workers=args.workers or config.server.workers,
    )
    config = msgspec.structs.replace(config, server=server)
    options = {
        "host": server.host,
        "port": server.port,
        "log_level": server.log_level,
        "access_log": False,  # RequestContext writes one line per request, with its request id
        # Our own drain (server.drain_seconds) already let running requests finish; this is uvicorn's
        # last wait before it cancels what is left.
        "timeout_graceful_shutdown": 5,
        "server_header": False,
    }
    if args.dev and server.workers > 1:
        print("chatspark: --dev runs one worker (the embedded store lives in one process)", file=sys.stderr)
    if args.dev or server.workers == 1:
        app: ASGIApp | str = create_app(config, allow_embedded=args.dev, dev_key=args.dev)
    else:
        # Each worker is a fresh (spawned) process building the app from the same configuration.
        app = "chatspark.web:app_from_environment"
        options |= {"factory": True, "workers": server.workers}
    if not server.socket_send_buffer:
        uvicorn.run(app, **options)
        return 0
    # uvicorn has no SO_SNDBUF option: bind the listening socket here, as uvicorn.run would, and hand
    # it over; on Linux every connection it accepts inherits the size (and loses the autotuning).
    settings = uvicorn.Config(app, **options)
    listener = settings.bind_socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, server.socket_send_buffer)
    if settings.workers > 1:
        Multiprocess(settings, sockets=[listener]).run()
    else:
        uvicorn.Server(settings).run(sockets=[listener])
    return 0


def _keys_create(args: argparse.Namespace, config: Config) -> int:
    agents = [int(a) for a in args.agents.split(",") if a.strip()] if args.agents else None
    scopes = [s for group in args.scopes for s in group.split(",") if s] if args.scopes else None
    expires = _parse_expiry(args.expires) if args.expires else None
    rate = _limit(args.rate_limit, config.limits.rate_presets, "--rate-limit") if args.rate_limit else None
    cap = None
    if args.monthly_cap:
        cap = 0 if args.monthly_cap == "unlimited" else _limit(args.monthly_cap, config.limits.cap_presets, "--monthly-cap")
    plain, record = mint_key(
        args.mode, scopes=scopes, agents=agents, expires_ms=expires, name=args.name, rate_limit=rate, monthly_cap=cap
    )
    _with_store(config, lambda store: store.put_api_key(record))
    print(f"id: {record.id}  mode: {record.mode}  scopes: {' '.join(record.scopes)}")
    print(f"agents: {'all' if record.agents is None else ','.join(map(str, record.agents))}  "
          f"expires: {iso(expires) if expires else 'never'}")
    print(f"rate limit: {_rate(record, config)}/min  monthly cap: {_cap(record, config)}")
    print("Store this key now; it is not shown again:")
    print(plain)
    return 0


def _keys_list(args: argparse.Namespace, config: Config) -> int:
    records = _with_store(config, lambda store: store.list_api_keys())
    if not records:
        print("no keys")
    for r in records:
        state = "revoked" if r.revoked else ("expired" if r.expires and r.expires <= now_ms() else "active")
        agents = "all" if r.agents is None else ",".join(map(str, r.agents))
        print(f"{r.id}  {r.mode:4}  {state:7}  created {iso(r.created)}  "
              f"expires {iso(r.expires) if r.expires else 'never':24}  agents {agents}  "
              f"scopes {' '.join(r.scopes)}  rate {_rate(r, config)}/min  cap {_cap(r, config)}  {r.name}")
    return 0


def _limit(value: str, presets: dict[str, int], option: str) -> int:
    if value in presets:
        return presets[value]
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(f"{option} takes a positive number or one of: {', '.join(presets)}")


def _rate(record: ApiKeyRecord, config: Config) -> int:
    return record.rate_limit or config.limits.rate_per_minute


def _cap(record: ApiKeyRecord, config: Config) -> str:
    cap = record.monthly_cap
    if cap is None:
        cap = config.limits.monthly_cap_live if record.mode == "live" else config.limits.monthly_cap_test
    return "unlimited" if cap == 0 else str(cap)


def _keys_revoke(args: argparse.Namespace, config: Config) -> int:
    record = _with_store(config, lambda store: store.revoke_api_key(args.key_id, now_ms()))
    if record is None:
        print(f"chatspark: no key with id {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {record.id}")
    return 0


def _with_store(config: Config, action):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        store: Store = await open_store(config.store, allow_embedded=False)
        try:
            return await action(store)
        finally:
            await store.aclose()

    return asyncio.run(run())


_DURATION = re.compile(r"^(\d+)([dhm])$")


def _parse_expiry(text: str) -> int:
    duration = _DURATION.match(text.strip())
    if duration:
        amount, unit = int(duration[1]), duration[2]
        return now_ms() + amount * {"d": 86_400_000, "h": 3_600_000, "m": 60_000}[unit]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--expires: {text!r} is neither a duration (30d, 12h, 45m) nor a date") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    expires = int(when.timestamp() * 1000)
    if expires <= now_ms():
        raise ValueError("--expires is in the past")
    return expires


def _explain(exc: Exception, config: Config) -> str:
    if isinstance(exc, StoreUnavailable):
        return f"cannot reach Redis ({exc.__cause__}); keys live in Redis: start it or set REDIS_URL"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
