"""The `chatspark` command: `serve`, and `keys create|list|revoke` against the configured Redis."""

from __future__ import annotations

import argparse
import asyncio
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
from datetime import UTC, datetime

import msgspec

from chatspark import logs
from chatspark.apikeys import SCOPES, mint_key
from chatspark.clock import iso, now_ms
from chatspark.config import Config, ConfigError, load_config
from chatspark.store import Store, open_store, safe_url

from chatspark.store.errors import StoreUnavailable
from chatspark.store.keys import ApiKeyRecord


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"chatspark: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "log_format", None):
        config = msgspec.structs.replace(config, server=msgspec.structs.replace(config.server, log_format=args.log_format))
    logs.configure(config.server.log_level, config.server.log_format)
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
    serve.add_argument("--host", help="address to listen on (default: server.host of the config, 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="TCP port, 1-65535 (default: server.port of the config, 8000)")
    serve.add_argument("--workers", type=_positive, help="processes (default: server.workers, 1)")
    serve.add_argument(
        "--log-format", choices=("text", "json"), help="text lines, or one JSON object per line (default: server.log_format)"
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="laptop mode: print a test key at start; without Redis, use the embedded store (1 worker)",
    )
    serve.set_defaults(run=_serve)

    token = commands.add_parser(
        "metrics-token", help="make a bearer token for GET /metrics; prints it and the [metrics] line to configure"
    )
    token.set_defaults(run=_metrics_token)

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
        # Forwarded headers are believed only from `server.trusted_proxies` (create_app); uvicorn's
        # default would believe them from any loopback peer.
        "proxy_headers": False,
    }
    if server.log_format == "json":
        options["log_config"] = None  # uvicorn's lines go through our JSON handler (logs.configure)
    if args.dev and server.workers > 1:
        print("chatspark: --dev runs one worker (the embedded store lives in one process)", file=sys.stderr)
    if args.dev or server.workers == 1:
        app: ASGIApp | str = create_app(config, fall_back_to_memory=args.dev, dev_key=args.dev)
    else:
        # Each worker is a fresh (spawned) process building the app from the same configuration.
        app = "chatspark.web:app_from_environment"
        options |= {"factory": True, "workers": server.workers}
        # The spawned workers read their configuration from the environment: this file, this log
        # format, and one folder where each writes its metrics (any of them answers a scrape with all).
        os.environ["CHATSPARK_CONFIG"] = config.source
        os.environ["CHATSPARK_LOG_FORMAT"] = server.log_format
    if config.metrics.port and config.metrics.port == server.port:
        raise ValueError(f"[metrics] port {config.metrics.port} is the API's port: pick another")
    # Bound here, before the app starts: a busy port fails at once with a clear message, before a
    # dev key is printed (uvicorn binds only after the app's startup, seconds later).
    listeners = [_listening_socket(server.host, server.port, server.socket_send_buffer)]
    if config.metrics.port:  # served by the same workers; RequestContext answers only /metrics there
        listeners.append(_listening_socket(config.metrics.host, config.metrics.port, 0))
    settings = uvicorn.Config(app, **options)
    if settings.workers > 1:
        metrics_dir = _metrics_folder()
        try:
            Multiprocess(settings, sockets=listeners).run()
        finally:
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        return 0
    running = uvicorn.Server(settings)
    running.run(sockets=listeners)
    return 0 if running.started else 3  # 3: the app failed to start, as uvicorn.run says it


def _metrics_folder() -> str | None:
    """$PROMETHEUS_MULTIPROC_DIR emptied (values of an earlier run would add up), else a new folder
    removed at exit (returned)."""
    from chatspark.metrics import MULTIPROC_DIR

    given = os.environ.get(MULTIPROC_DIR)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.remove(os.path.join(given, name))
        return None
    made = tempfile.mkdtemp(prefix="chatspark-metrics-")
    os.environ[MULTIPROC_DIR] = made
    return made


def _metrics_token(args: argparse.Namespace, config: Config) -> int:
    token = "csm_" + secrets.token_urlsafe(32)
    print("Configure the hash (config.toml, or CHATSPARK_METRICS_TOKEN_SHA256 in the environment):")
    print(f'  [metrics]\n  token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"')
    print("Give the scraper this token (Authorization: Bearer <token>); it is not shown again:")
    print(token)
    return 0


def _listening_socket(host: str, port: int, send_buffer: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer:
        # uvicorn has no SO_SNDBUF option; on Linux every accepted connection inherits the size (and
        # loses the kernel's autotuning).
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    try:
        listener.bind((host.strip("[]"), port))
    except OSError as exc:
        listener.close()
        hint = " (another process listens there: stop it, or pick another port: --port / make run PORT=…)"
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror}{hint if exc.errno == errno.EADDRINUSE else ''}") from None
    listener.listen(2048)  # uvicorn's default backlog
    listener.set_inheritable(True)  # the workers of --workers N share it
    return listener


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def _keys_create(args: argparse.Namespace, config: Config) -> int:
    agents = _agent_ids(args.agents) if args.agents else None
    scopes = [s for group in args.scopes for s in group.split(",") if s] if args.scopes else None
    expires = _parse_expiry(args.expires) if args.expires else None
    rate = _limit(args.rate_limit, config.limits.rate_presets, "--rate-limit") if args.rate_limit else None
    cap = None
    if args.monthly_cap:
        cap = 0 if args.monthly_cap == "unlimited" else _limit(args.monthly_cap, config.limits.cap_presets, "--monthly-cap")
    plain, record = mint_key(
        args.mode, scopes=scopes, agents=agents, expires_ms=expires, name=args.name, rate_limit=rate, monthly_cap=cap
    )
    _with_store(config, lambda store: store.keys.put(record))
    print(f"id: {record.id}  mode: {record.mode}  scopes: {_scopes(record)}")
    print(f"agents: {'all' if record.agents is None else ','.join(map(str, record.agents))}  "
          f"expires: {iso(expires) if expires else 'never'}")
    print(f"rate limit: {_rate(record, config)}/min  monthly cap: {_cap(record, config)}")
    print("Store this key now; it is not shown again:")
    print(plain)
    return 0


def _keys_list(args: argparse.Namespace, config: Config) -> int:
    records = _with_store(config, lambda store: store.keys.list())
    if not records:
        print("no keys")
    for r in records:
        state = "revoked" if r.revoked else ("expired" if r.expires and r.expires <= now_ms() else "active")
        agents = "all" if r.agents is None else ",".join(map(str, r.agents))
        print(f"{r.id}  {r.mode:4}  {state:7}  created {iso(r.created)}  "
              f"expires {iso(r.expires) if r.expires else 'never':24}  agents {agents}  "
              f"scopes {_scopes(r)}  rate {_rate(r, config)}/min  cap {_cap(r, config)}  {r.name}")
    return 0


def _limit(value: str, presets: dict[str, int], option: str) -> int:
    if value in presets:
        return presets[value]
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(f"{option} takes a positive number or one of: {', '.join(presets)}")


def _scopes(record: ApiKeyRecord) -> str:
    return "all" if record.scopes is None else " ".join(record.scopes)


def _rate(record: ApiKeyRecord, config: Config) -> int:
    return record.rate_limit or config.limits.rate_per_minute


def _cap(record: ApiKeyRecord, config: Config) -> str:
    cap = record.monthly_cap
    if cap is None:
        cap = config.limits.monthly_cap_live if record.mode == "live" else config.limits.monthly_cap_test
    return "unlimited" if cap == 0 else str(cap)


def _agent_ids(text: str) -> list[int]:
    ids = []
    for part in (p.strip() for p in text.split(",")):
        digits = part.removeprefix("ag_")
        if not digits.isascii() or not digits.isdigit() or int(digits) < 1:
            raise ValueError("--agents takes agent ids separated by commas, e.g. --agents 1,2 (or ag_1,ag_2)")
        ids.append(int(digits))
    return ids


_KEY_ID = re.compile(r"^key_[0-9a-f]{1,32}$")


def _keys_revoke(args: argparse.Namespace, config: Config) -> int:
    if not _KEY_ID.match(args.key_id):
        # Never echo it back: people paste the secret key here.
        what = "the key itself" if args.key_id.startswith(("cs_", "sk")) else "not a key id"
        raise ValueError(f"`keys revoke` takes a key id like key_0123456789ab (see `chatspark keys list`); that was {what}")

    async def revoke(store: Store) -> str:
        record = await store.keys.find(args.key_id)
        if record is None:
            return "missing"
        if record.revoked is not None:
            return "already revoked"
        await store.keys.revoke(record, now_ms())
        return "revoked"

    outcome = _with_store(config, revoke)
    if outcome == "missing":
        print(f"chatspark: no key with id {args.key_id}", file=sys.stderr)
        return 1
    print(f"{outcome} {args.key_id}")
    return 0


def _with_store(config: Config, action):  # type: ignore[no-untyped-def]
    # The command says itself what went wrong (see _explain); the store's own log lines are for servers.
    logging.getLogger("chatspark.store").setLevel(logging.CRITICAL)

    async def run():  # type: ignore[no-untyped-def]
        store: Store = await open_store(config.store)
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
        return (
            f"cannot reach Redis at {safe_url(config.store.url)}: keys live in Redis; start it or set REDIS_URL.\n"
            "  Running `make run` (serve --dev) without Redis? It uses the embedded in-process store, which\n"
            "  this command cannot reach: use the dev key that `make run` printed at start."
        )
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
