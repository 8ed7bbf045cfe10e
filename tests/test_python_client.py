"""The Python client (clients/python, package `chatspark_client`) against a live Chatspark: a real
uvicorn on a socket, a real Redis, the fake provider. Every method, sync and async; errors by class;
a retry that waits as `Retry-After` says; lists walked across pages; a stream cut mid-way by a TCP
proxy and resumed with `Last-Event-ID`; and the package imported with nothing but httpx."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

import chatspark_client as cs
from chatspark.errors import ERROR_STATUS
from chatspark_client.errors import ERRORS_BY_CODE
from tests.fake_openai import drop_mid_stream, error, reply

ROOT = Path(__file__).resolve().parent.parent
CLIENT_SRC = ROOT / "clients" / "python" / "src"
STREAMED = "alpha beta gamma delta epsilon zeta eta theta"


@pytest.fixture
def connect(live_server: Any) -> Any:
    """`connect(key=None, base_url=None, recorder=None, **options)`: a sync client of the live
    server (a new key unless given), closed with its recorder's httpx client when the test ends."""
    opened: list[Any] = []

    def make(key: str | None = None, base_url: str | None = None, recorder: Recorder | None = None,
             **options: Any) -> cs.Chatspark:
        client = cs.Chatspark(key or live_server.key(), base_url or live_server.base_url,
                              http_client=recorder.http if recorder else None, **options)
        opened.extend([client] + ([recorder.http] if recorder else []))
        return client

    yield make
    for item in opened:
        item.close()


@pytest.fixture
def api(connect: Any) -> cs.Chatspark:
    return connect(max_retries=2)


def new_agent(client: cs.Chatspark, **fields: Any) -> cs.Agent:
    return client.agents.create(f"PyClient {secrets.token_hex(3)}", **{"model": "local", **fields})


class Recorder:
    """An httpx client whose requests and answers are noted (time, method, path, status, headers)."""

    def __init__(self, asynchronous: bool = False) -> None:
        self.sent: list[tuple[float, httpx.Request]] = []
        self.answers: list[tuple[float, int]] = []
        hooks = {"request": [self._request], "response": [self._response]}
        if asynchronous:
            hooks = {"request": [self._arequest], "response": [self._aresponse]}
            self.http: Any = httpx.AsyncClient(event_hooks=hooks, timeout=30)
        else:
            self.http = httpx.Client(event_hooks=hooks, timeout=30)

    def _request(self, request: httpx.Request) -> None:
        self.sent.append((time.monotonic(), request))

    def _response(self, response: httpx.Response) -> None:
        self.answers.append((time.monotonic(), response.status_code))

    async def _arequest(self, request: httpx.Request) -> None:
        self._request(request)

    async def _aresponse(self, response: httpx.Response) -> None:
        self._response(response)


# --- the package -------------------------------------------------------------------------------


def test_there_is_one_exception_class_per_contract_code_with_its_status() -> None:
    assert set(ERRORS_BY_CODE) == set(ERROR_STATUS)
    for code, cls in ERRORS_BY_CODE.items():
        assert cls.default_status == ERROR_STATUS[code], code
        assert issubclass(cls, cs.ChatsparkError)


def _distribution_files(name: str, seen: set[str]) -> list[Path]:
    """The installed files of a distribution and of everything it requires (extras left out)."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return []
    seen.add(key)
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:  # required only where a marker holds (an older Python)
        return []
    files = [Path(str(dist.locate_file(f))) for f in dist.files or []]
    for requirement in dist.requires or []:
        if "extra ==" in requirement:
            continue
        files += _distribution_files(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0], seen)
    return files


def test_the_package_imports_with_only_httpx_on_the_path(tmp_path: Path) -> None:
    # A folder holding httpx and what it needs, nothing else: the client must import from it and
    # the standard library alone (`-I -S`: no site-packages, no environment, no current directory).
    only_httpx = tmp_path / "site"
    only_httpx.mkdir()
    site = Path(httpx.__file__).resolve().parent.parent
    for path in _distribution_files("httpx", set()):
        if not path.resolve().is_relative_to(site):  # its console script
            continue
        relative = path.resolve().relative_to(site)
        top = only_httpx / relative.parts[0]
        if not top.exists() and (site / relative.parts[0]).exists():
            top.symlink_to(site / relative.parts[0])
    code = (
        "import sys; sys.path[1:1] = [%r, %r]\n"
        "import chatspark_client as cs\n"
        "client = cs.Chatspark('cs_test_x', 'http://127.0.0.1:9'); client.close()\n"
        "for absent in ('chatspark', 'msgspec', 'starlette', 'redis'):\n"
        "    try:\n"
        "        __import__(absent)\n"
        "    except ImportError:\n"
        "        continue\n"
        "    raise SystemExit(absent + ' was importable: the path is not clean')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'chatspark_client')))\n"
    ) % (str(CLIENT_SRC), str(only_httpx))
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "'chatspark_client'" in result.stdout and "'httpx'" in result.stdout


# --- every method, sync ------------------------------------------------------------------------


def test_every_method_of_the_sync_client(api: cs.Chatspark, live_server: Any) -> None:
    agent = new_agent(api, bot_personality="You are terse.")
    assert isinstance(agent, cs.Agent) and agent.model == "local" and agent.bot_personality == "You are terse."
    assert api.agents.get(f"ag_{agent.id}").id == agent.id
    assert api.agents.update(agent.id, name="Renamed", welcome_message="Hi").name == "Renamed"
    assert agent.id in [a.id for a in api.agents.list(limit=100)]

    first = api.chat.send(agent.id, "What are your opening hours?")
    assert isinstance(first, cs.ChatResponse) and first.text and first.reply == first.text
    assert first.usage.completion_tokens >= 0 and first.message_id and not first.replayed
    events = list(api.chat.send_streaming(agent.id, "And on weekends?", conversation_id=first.conversation_id))
    *deltas, done = events
    assert all(isinstance(e, cs.ChatDelta) for e in deltas) and isinstance(done, cs.ChatDone)
    assert done.conversation_id == first.conversation_id and done.message_id

    (summary,) = api.conversations.list(agent.id)
    assert summary.id == first.conversation_id and summary.message_count == 4
    conversation = api.conversations.get(agent.id, first.conversation_id)
    assert [e.query for e in conversation.messages] == ["What are your opening hours?", "And on weekends?"]
    assert conversation.messages[1].response == "".join(e.delta for e in events)
    messages = list(api.conversations.get_messages(agent.id, first.conversation_id))
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    rated = api.feedback(agent.id, first.conversation_id, first.message_id, "positive")
    assert rated == cs.Feedback(message_id=first.message_id, rating="positive")
    assert api.feedback.send(agent.id, first.conversation_id, first.message_id, None).rating is None

    lead = api.leads.create(agent.id, email="ada@example.com", company_name="Example")
    assert [(x.id, x.company_name) for x in api.leads.list(agent.id)] == [(lead.id, "Example")]
    stats = api.analytics.get(agent.id)
    assert (stats.total_messages, stats.total_conversations, stats.total_leads) == (4, 1, 1)
    api.leads.delete(agent.id, lead.id)
    assert list(api.leads.list(agent.id)) == []

    source = api.training.add(agent.id, "faq", data="# Parking\nThe car park opens at 7:00.")
    assert source.status in ("pending", "processing", "completed") and source.type == "text"
    assert [s.id for s in api.training.list(agent.id)] == [source.id]
    assert api.training.get(agent.id, source.id).source == "faq"
    api.training.delete(agent.id, source.id)
    with pytest.raises(cs.ResourceNotFoundError):
        api.training.get(agent.id, source.id)

    hook = api.webhooks.create("pyclient", "https://hooks.example.com/in", ["lead.captured"], agent_ids=[agent.id])
    assert hook.secret and hook.secret.startswith("whsec_") and hook.agent_ids == [agent.id]
    assert hook.id in [w.id for w in api.webhooks.list()]
    assert api.webhooks.get(hook.id).secret is None
    assert api.webhooks.update(hook.id, is_active=False).is_active is False
    api.webhooks.delete(hook.id)
    with pytest.raises(cs.ResourceNotFoundError):
        api.webhooks.get(hook.id)

    api.conversations.delete(agent.id, first.conversation_id)
    with pytest.raises(cs.ResourceNotFoundError):
        api.conversations.get(agent.id, first.conversation_id)
    api.agents.delete(agent.id)
    with pytest.raises(cs.AgentNotFoundError) as missing:
        api.agents.get(agent.id)
    assert missing.value.status == 404 and missing.value.request_id


def test_chat_and_create_calls_carry_an_idempotency_key_that_replays(connect: Any, fake_openai: Any) -> None:
    recorder = Recorder()
    with connect(recorder=recorder) as api:
        agent = new_agent(api)
        first = api.chat.send(2, "once only", idempotency_key="pyclient-" + secrets.token_hex(6))
        again = api.chat.send(2, "once only", idempotency_key=recorder.sent[-1][1].headers["idempotency-key"])
        api.agents.get(agent.id)
    keys = [r.headers.get("idempotency-key") for _, r in recorder.sent]
    assert keys[0] and keys[0].startswith("cspy_")  # agents.create: generated
    assert keys[-1] is None  # a GET has none
    assert again.replayed and again.message_id == first.message_id
    assert len(fake_openai.requests) == 1
    with connect() as api:
        api.chat.send(1, "x", idempotency_key="k1")
        with pytest.raises(cs.IdempotencyConflictError) as conflict:
            api.chat.send(1, "y", idempotency_key="k1")
    assert conflict.value.status == 409 and not conflict.value.retryable


# --- errors ------------------------------------------------------------------------------------


def test_errors_are_raised_as_their_code_class(live_server: Any, connect: Any) -> None:
    with pytest.raises(cs.ApiKeyInvalidError) as invalid:
        connect("cs_live_" + "x" * 40).agents.list()
    assert (invalid.value.status, invalid.value.code, invalid.value.retryable) == (401, "API_KEY_INVALID", False)
    assert isinstance(invalid.value, cs.AuthenticationError) and invalid.value.request_id
    expired = live_server.key(expires_ms=int(time.time() * 1000) - 1000)
    with pytest.raises(cs.ApiKeyExpiredError):
        connect(expired).agents.list()
    with pytest.raises(cs.ScopeInsufficientError) as scope:
        connect(live_server.key(scopes=["chat"])).agents.list()
    assert isinstance(scope.value, cs.PermissionDeniedError) and scope.value.status == 403
    with pytest.raises(cs.AgentAccessDeniedError):
        connect(live_server.key(agents=[1])).agents.get(2)
    api = connect()
    with pytest.raises(cs.ValidationError) as invalid_body:
        api.chat.send(1, "   ")
    assert "message" in invalid_body.value.fields
    with pytest.raises(cs.ResourceNotFoundError):
        api.chat.send(1, "hello", conversation_id="no-such-conversation")
    with pytest.raises(cs.ResourceNotFoundError):
        list(api.chat.send_streaming(1, "hello", conversation_id="no-such-conversation"))
    with pytest.raises(cs.AgentNotFoundError):
        api.agents.get(987654321)
    with pytest.raises(cs.ValidationError):
        api.analytics.get(1, start="2026-02-10", end="2026-02-01")


def test_a_rate_limit_longer_than_max_retry_delay_is_raised_at_once_with_retry_after(live_server: Any,
                                                                                     connect: Any) -> None:
    recorder = Recorder()
    api = connect(live_server.key(rate_limit=1), max_retries=3, max_retry_delay=2, recorder=recorder)
    api.agents.get(1)
    started = time.monotonic()
    with pytest.raises(cs.RateLimitExceededError) as limited:
        api.agents.get(1)
    assert time.monotonic() - started < 1.5  # no waiting for a minute
    assert limited.value.status == 429 and limited.value.retryable and limited.value.retry_after > 2
    assert [status for _, status in recorder.answers] == [200, 429]


def test_a_busy_conversation_is_retried_after_its_retry_after_with_the_same_key(live_server: Any, connect: Any,
                                                                                fake_openai: Any) -> None:
    key = live_server.key()
    with httpx.Client(base_url=live_server.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as raw:
        cid = raw.post("/api/v1/agents/2/chat", json={"message": "start"}).json()["conversationId"]
        fake_openai.enqueue(reply("one two three four five six", chunks=6, gap=0.3))  # ~1.8 s
        long_turn = {"message": "long one", "stream": True, "conversationId": cid}
        with raw.stream("POST", "/api/v1/agents/2/chat", json=long_turn) as running:
            # One iterator kept open: a closed line iterator would hang up, and the turn would stop.
            lines = running.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            with pytest.raises(cs.ConversationBusyError) as busy:
                connect(key, max_retries=0).chat.send(2, "now", conversation_id=cid)
            assert busy.value.retry_after == 1 and busy.value.retryable
            recorder = Recorder()
            api = connect(key, max_retries=5, recorder=recorder)
            answer = api.chat.send(2, "after you", conversation_id=cid)
            assert "six" in "".join(lines)  # the long turn ran to its end meanwhile
    statuses = [status for _, status in recorder.answers]
    assert statuses[0] == 409 and statuses[-1] == 200 and set(statuses[:-1]) == {409}
    for (sent_at, _), (answered_at, status) in zip(recorder.sent[1:], recorder.answers):
        assert sent_at - answered_at >= 1.0  # Retry-After: 1, honoured
    assert len({r.headers["idempotency-key"] for _, r in recorder.sent}) == 1
    assert answer.conversation_id == cid and "after you" in answer.text


# --- pagination --------------------------------------------------------------------------------


def test_lists_page_themselves(api: cs.Chatspark) -> None:
    agent = new_agent(api)
    started = [api.chat.send(agent.id, f"hello {n}").conversation_id for n in range(5)]
    page = api.conversations.list(agent.id, limit=2)
    assert len(page.items) == 2 and page.has_next_page()
    assert [c.id for c in page] == started[::-1]  # newest first, every page
    assert page.next_page().next_page().next_page() is None  # type: ignore[union-attr]
    api.chat.send(agent.id, "again", conversation_id=started[0])
    messages = api.conversations.get_messages(agent.id, started[0], limit=3)
    assert [m.content for m in messages][0::2] == ["hello 0", "again"]
    assert len(list(messages)) == 4 and len(messages.items) == 3


# --- streams -----------------------------------------------------------------------------------


class DroppingProxy:
    """A TCP proxy to the server that cuts its first connection carrying `cut_at` a few bytes after
    it (mid-event): what a client sees when a network path fails in the middle of a stream."""

    def __init__(self, port: int, cut_at: bytes = b"id: 3\ndata: {", unavailable_after_cut: int = 0) -> None:
        self.target = port
        self.cut_at = cut_at
        self.cuts_left = 1
        self.connections = 0
        # Then answer this many connections itself, as a load balancer without a healthy backend does.
        self.unavailable_left = unavailable_after_cut
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.cuts_left == 0 and self.unavailable_left > 0:
                self.unavailable_left -= 1
                downstream.recv(65536)
                page = b"<h1>503 no backend</h1>"
                downstream.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Type: text/html\r\n"
                                   b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(page), page))
                downstream.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(downstream, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        seen = b""
        try:
            while data := source.recv(65536):
                if answers:
                    seen += data
                    at = seen.find(self.cut_at)
                    with self._lock:
                        cut = at >= 0 and self.cuts_left > 0
                        self.cuts_left -= cut
                    if cut:
                        keep = len(data) - (len(seen) - (at + len(self.cut_at)))
                        sink.sendall(data[:keep])
                        break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


@pytest.fixture
def proxy(live_server: Any) -> Any:
    running = DroppingProxy(live_server.port)
    yield running
    running.close()


def check_resumed(events: list[cs.ChatEvent], fake_openai: Any, proxy: DroppingProxy) -> None:
    *deltas, done = events
    assert isinstance(done, cs.ChatDone) and all(isinstance(e, cs.ChatDelta) for e in deltas)
    assert "".join(e.delta for e in events) == STREAMED  # every piece exactly once, in order
    ids = [e.event_id for e in events]
    assert ids == list(range(1, len(events) + 1))
    assert proxy.cuts_left == 0 and proxy.connections == 2  # it was cut, and the client came back
    assert len(fake_openai.requests) == 1  # one model call: the second request followed the first turn


def test_a_stream_cut_mid_way_resumes_with_last_event_id(connect: Any, fake_openai: Any, proxy: DroppingProxy) -> None:
    fake_openai.enqueue(reply(STREAMED, chunks=8, gap=0.1))
    recorder = Recorder()
    api = connect(base_url=proxy.base_url, recorder=recorder)
    events = list(api.chat.send_streaming(2, "stream and survive"))
    check_resumed(events, fake_openai, proxy)
    first, second = (request for _, request in recorder.sent)
    assert "last-event-id" not in first.headers and second.headers["last-event-id"] == "2"
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    stored = api.conversations.get(2, events[-1].conversation_id)
    assert [e.response for e in stored.messages] == [STREAMED]


def test_a_resume_answered_by_a_503_is_retried_and_still_resumes_after_the_last_event(
        connect: Any, live_server: Any, fake_openai: Any) -> None:
    fake_openai.enqueue(reply(STREAMED, chunks=8, gap=0.1))
    proxy = DroppingProxy(live_server.port, unavailable_after_cut=1)
    recorder = Recorder()
    try:
        events = list(connect(base_url=proxy.base_url, recorder=recorder, max_retries=3).chat.send_streaming(2, "503"))
    finally:
        proxy.close()
    assert "".join(e.delta for e in events) == STREAMED
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    assert [r.headers.get("last-event-id") for _, r in recorder.sent] == [None, "2", "2"]
    assert proxy.connections == 3 and len(fake_openai.requests) == 1


def test_a_stream_that_cannot_be_resumed_raises_a_connection_error(connect: Any, fake_openai: Any,
                                                                    proxy: DroppingProxy) -> None:
    fake_openai.enqueue(reply(STREAMED, chunks=8, gap=0.1))
    seen: list[cs.ChatEvent] = []
    with pytest.raises(cs.ChatsparkConnectionError):
        for event in connect(base_url=proxy.base_url, max_retries=0).chat.send_streaming(2, "no retry"):
            seen.append(event)
    assert "".join(e.delta for e in seen) == "alpha beta "  # the two whole events before the cut, no more
    assert proxy.connections == 1


def test_a_stream_whose_turn_failed_before_any_delta_is_asked_again(connect: Any, fake_openai: Any) -> None:
    fake_openai.enqueue(error(500), reply("second time lucky"))
    events = list(connect(max_retries=1).chat.send_streaming(2, "flaky"))
    assert "".join(e.delta for e in events) == "second time lucky" and isinstance(events[-1], cs.ChatDone)
    assert len(fake_openai.requests) == 2


def test_a_stream_that_failed_after_deltas_raises_its_streaming_error(connect: Any, fake_openai: Any) -> None:
    fake_openai.enqueue(drop_mid_stream(after_chunks=2))
    seen: list[cs.ChatEvent] = []
    with pytest.raises(cs.StreamingError) as failed:
        for event in connect(max_retries=3).chat.send_streaming(2, "half"):
            seen.append(event)
    assert failed.value.cause == "UPSTREAM_ERROR" and failed.value.status == 500
    assert seen and all(isinstance(e, cs.ChatDelta) for e in seen)
    assert len(fake_openai.requests) == 1  # not run again: the deltas already shown would repeat


# --- every method, async -----------------------------------------------------------------------


def test_every_method_of_the_async_client(live_server: Any, fake_openai: Any, proxy: DroppingProxy) -> None:
    key = live_server.key()

    async def scenario() -> None:
        async with cs.AsyncChatspark(key, live_server.base_url + "/api/v1") as api:
            agent = await api.agents.create(f"Async {secrets.token_hex(3)}", model="local")
            assert (await api.agents.get(agent.id)).name == agent.name
            assert (await api.agents.update(agent.id, bot_name="Aster")).bot_name == "Aster"
            assert agent.id in [a.id async for a in api.agents.list(limit=1)]  # walks every page of one
            first = await api.chat.send(agent.id, "hello")
            events = [e async for e in api.chat.send_streaming(agent.id, "more", conversation_id=first.conversation_id)]
            assert isinstance(events[-1], cs.ChatDone)
            for n in range(2):
                await api.chat.send(agent.id, f"other {n}")
            page = await api.conversations.list(agent.id, limit=2)  # awaited: the first page
            assert isinstance(page, cs.AsyncPage) and len(page.items) == 2 and page.has_next_page()
            assert len([c async for c in page]) == 3
            second = await page.next_page()
            assert second is not None and len(second.items) == 1 and await second.next_page() is None
            assert len((await api.conversations.get(agent.id, first.conversation_id)).messages) == 2
            rows = [m async for m in api.conversations.get_messages(agent.id, first.conversation_id, limit=1)]
            assert [m.role for m in rows] == ["user", "assistant"] * 2
            assert (await api.feedback(agent.id, first.conversation_id, first.message_id, "negative")).rating == "negative"
            lead = await api.leads.create(agent.id, phone="+1 555 0100")
            assert [x.id async for x in api.leads.list(agent.id)] == [lead.id]
            await api.leads.delete(agent.id, lead.id)
            assert (await api.analytics.get(agent.id)).total_messages == 8
            source = await api.training.add(agent.id, "notes", data="Deliveries arrive on Tuesdays.")
            assert [s.id async for s in api.training.list(agent.id)] == [source.id]
            assert (await api.training.get(agent.id, source.id)).id == source.id
            await api.training.delete(agent.id, source.id)
            hook = await api.webhooks.create("async", "https://hooks.example.com/a", ["message.sent"])
            assert hook.secret and (await api.webhooks.get(hook.id)).name == "async"
            assert hook.id in [w.id async for w in api.webhooks.list()]
            assert (await api.webhooks.update(hook.id, name="renamed")).name == "renamed"
            await api.webhooks.delete(hook.id)
            await api.conversations.delete(agent.id, first.conversation_id)
            with pytest.raises(cs.ResourceNotFoundError):
                await api.conversations.get(agent.id, first.conversation_id)
            await api.agents.delete(agent.id)
            with pytest.raises(cs.AgentNotFoundError):
                await api.agents.delete(agent.id)
            with pytest.raises(cs.ValidationError):
                await api.chat.send(1, "")

        fake_openai.enqueue(reply(STREAMED, chunks=8, gap=0.1))
        recorder = Recorder(asynchronous=True)
        async with cs.AsyncChatspark(key, proxy.base_url, http_client=recorder.http) as through_proxy:
            async with through_proxy.chat.send_streaming(2, "async resume") as stream:
                resumed = [e async for e in stream]
        check_resumed(resumed, fake_openai, proxy)
        assert recorder.sent[1][1].headers["last-event-id"] == "2"
        await recorder.http.aclose()

    asyncio.run(scenario())


def test_the_client_builds_as_a_package_of_its_own_requiring_only_httpx(tmp_path: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "build", "--quiet", "--out-dir", str(tmp_path), str(CLIENT_SRC.parent)],
                   check=True, capture_output=True, timeout=120)
    (wheel,) = tmp_path.glob("chatspark_client-*.whl")
    with zipfile.ZipFile(wheel) as packed:
        names = packed.namelist()
        metadata = next(packed.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"chatspark_client"}
    assert "chatspark_client/py.typed" in names
    assert [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")] == [
        "Requires-Dist: httpx<1,>=0.27"
    ]


def test_the_readme_snippets_run(live_server: Any, tmp_path: Path) -> None:
    readme = (CLIENT_SRC.parent / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(snippets) == 2
    for n, snippet in enumerate(snippets):
        script = tmp_path / f"snippet{n}.py"
        script.write_text(snippet.replace("http://localhost:8000", live_server.base_url))
        env = {"CHATSPARK_API_KEY": live_server.key(), "PATH": "/usr/bin:/bin"}
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "We are open Monday to Friday" in result.stdout or n == 1
        assert "We are closed on weekends" in result.stdout and "1 Support Bot" in result.stdout
