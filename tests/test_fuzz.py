"""Fuzzing: schemathesis against /openapi.json of a real server, and hypothesis on the body decoder.

Whatever a client sends: no 5xx but the contract's 502/503/504, every error in the envelope with a
contract code, an `x-request-id` on every answer, and no hang. Every schemathesis check runs
(`--checks all`: the document tells the truth both ways, valid data is accepted, invalid data
refused), and `schemathesis run` adds its stateful phase. Each test is bounded to about a minute.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from chatspark.agents import AgentChanges
from chatspark.analytics import period
from chatspark.errors import ValidationFailed
from chatspark.openapi import ERROR_STATUS, OPERATIONS, document
from chatspark.schemas import ChatRequest, FeedbackRequest, decode_body
from tests.conftest import RunningServer
from tests.schemathesis_hooks import end_with_a_user_message

EXAMPLES = 20  # per operation and mode: 13 operations x 3 modes
CLI_EXAMPLES = 25  # per operation and phase of the `schemathesis run` test
REPO = Path(__file__).resolve().parent.parent
ALLOWED_5XX = {502, 503, 504}  # upstream and store failures; agent 1 needs no upstream, Redis is up
TIMEOUT = 10  # seconds; a request that takes longer counts as a hang
BODY_TYPES = [ChatRequest, AgentChanges, FeedbackRequest]


@pytest.fixture
def fuzz_server(start_live_server: Callable[..., RunningServer], fake_openai: Any, provider_key: str,
                key_prefix: str) -> RunningServer:
    """A server on a prefix of its own: fuzzed PATCH and DELETE calls must not reach other tests' agents."""
    # Private URLs allowed: a generated source or webhook URL is a name (the schema says so) or an
    # address that no test resolves.
    return start_live_server(fake_openai.base_url, prefix=f"{key_prefix}-fuzz-{secrets.token_hex(3)}",
                             knowledge={"allow_private_urls": True}, webhooks={"allow_private_urls": True})


def is_malformed_http(request: requests.PreparedRequest) -> bool:
    """A header value with a control character is not HTTP (RFC 9110 §5.5): uvicorn's parser refuses
    it with its own plain 400 before the app sees a request, so the contract cannot apply."""
    return any(
        any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in str(value))
        for value in request.headers.values()
    )


def load_schema(server: RunningServer, key: str) -> schemathesis.schemas.BaseSchema:
    """The served document with every schemathesis check on (`--checks all`): conformance both
    ways, valid data accepted, invalid data refused, methods and auth refused, stateful checks.
    The key goes in as configured headers (the CLI's `-H`), which the auth checks know to remove."""
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json", timeout=TIMEOUT)
    schema.config.update(headers={"Authorization": f"Bearer {key}"})
    schema.config.checks.update(included_check_names=["all"])
    return schema


def drop_generated_cursor(case: schemathesis.Case) -> None:
    """The document says a cursor is server-issued (JSON Schema cannot): a generated one makes a
    schema-valid request the service rightly refuses, so a valid case pages from the start. (The
    `schemathesis run` test follows the `NextPage` links to issued cursors.)"""
    if case.meta is not None and case.meta.generation.mode.is_positive and case.query:
        case.query.pop("cursor", None)


def drop_invalid_period(case: schemathesis.Case) -> None:
    """An analytics period must be calendar days, `start` with `end`, in order, at most 366 days: rules
    JSON Schema cannot state. A valid case whose period breaks one asks for the default period (as
    tests/schemathesis_hooks.py does for the CLI; the refusals are in tests/test_analytics.py)."""
    query = case.query or {}
    try:
        period(query.get("start"), query.get("end"))
    except ValidationFailed:
        query.pop("start", None)
        query.pop("end", None)


def assert_contract_answer(response: schemathesis.Response) -> None:
    headers = {name: values[0] for name, values in response.headers.items()}  # lowercase names
    sent = response.request
    assert headers.get("x-request-id"), f"no x-request-id: {sent.method} {sent.url!r} {sent.headers!r}"
    assert response.status_code < 500 or response.status_code in ALLOWED_5XX, response.text[:500]
    if response.status_code >= 400:
        assert headers["content-type"].startswith("application/json"), headers
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert ERROR_STATUS[error["code"]] == response.status_code, error


# (generation mode, whether path parameters name things that exist)
MODES = {
    "valid": (GenerationMode.POSITIVE, True),
    "invalid-inputs": (GenerationMode.NEGATIVE, True),  # body, query and headers mutated
    "invalid-anything": (GenerationMode.NEGATIVE, False),  # the path too
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_fuzzed_requests_get_contract_answers(fuzz_server: RunningServer, operation: Any, mode: str) -> None:
    generation, real_path = MODES[mode]
    can_be_wrong = operation.body or operation.paged or (not real_path and "{" in operation.path)
    if generation is GenerationMode.NEGATIVE and not can_be_wrong:
        pytest.skip("nothing left to get wrong: the path is fixed and any x-request-id is accepted")
    base = fuzz_server.base_url
    key = fuzz_server.key()
    schema = load_schema(fuzz_server, key)
    endpoint = schema[operation.path][operation.method.upper()]
    with fuzz_server.client(key) as http:
        turn = http.post("/api/v1/agents/1/chat", json={"message": "When are you open?"}).json()
        lead = http.post("/api/v1/agents/1/leads", json={"email": "fuzz@example.com"}).json()["lead"]
    # Path parameters that name what exists (agent 1, a real conversation, answer and lead) let the
    # requests reach the handlers past the lookups.
    real = {"agent_id": "1", "conversation_id": turn["conversationId"], "message_id": turn["messageId"],
            "lead_id": lead["id"]}
    fixed = {name: value for name, value in real.items() if f"{{{name}}}" in operation.path}
    strategy = endpoint.as_strategy(generation_mode=generation, path_parameters=fixed if real_path else None)
    session = requests.Session()
    auth = {"Authorization": f"Bearer {key}"}  # what load_schema configured, for the auth checks

    # No shrinking: a failure reports schemathesis' reproducing curl command, and stays fast.
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        drop_generated_cursor(case)
        if generation is GenerationMode.POSITIVE and operation.path.endswith("/analytics"):
            drop_invalid_period(case)
        if generation is GenerationMode.POSITIVE and operation.path == "/v1/chat/completions":
            end_with_a_user_message(case)
        transport = {"base_url": base, "session": session, "timeout": TIMEOUT}
        response = case.call(**transport)
        if is_malformed_http(response.request):
            assert response.status_code == 400
            return
        assert_contract_answer(response)
        case.validate_response(response, headers=auth, transport_kwargs=transport)

    try:
        check()
    finally:
        session.close()


@pytest.mark.timeout(300)
def test_schemathesis_with_every_check_and_the_stateful_phase_finds_nothing(
    fuzz_server: RunningServer, tmp_path: Path
) -> None:
    """`schemathesis run --checks all` with all its phases, stateful included: sequences that follow
    the document's links (create an agent, chat, read, page with issued cursors, rate, delete, read
    again), valid and invalid steps mixed, every check on every answer."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{fuzz_server.base_url}/openapi.json",
        "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
        "--header", f"Authorization: Bearer {fuzz_server.key()}",
        "--max-examples", str(CLI_EXAMPLES), "--workers", "1", "--request-timeout", str(TIMEOUT),
        "--suppress-health-check", "all", "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(REPO)}
    # Its own directory: the CLI keeps a cache and a Hypothesis database where it runs.
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-12_000:]
    assert "✅ Stateful" in report, report[-4_000:]  # it ran (links found) and passed


def test_fuzz_server_answers_the_document_it_was_built_from(fuzz_server: RunningServer) -> None:
    served = requests.get(f"{fuzz_server.base_url}/openapi.json", timeout=TIMEOUT).json()
    expected = document(fuzz_server.config.server.max_message_chars, tuple(fuzz_server.config.models))
    assert served == msgspec.json.decode(msgspec.json.encode(expected))


@pytest.mark.parametrize("ttl", [10**12, 10**19])
def test_an_agent_ttl_beyond_ten_years_is_refused(fuzz_server: RunningServer, ttl: int) -> None:
    # Found by this suite: an unbounded TTL gave a 5-digit year, or a 500 after the turn was stored.
    with fuzz_server.client(fuzz_server.key()) as http:
        created = http.post("/api/v1/agents", json={"name": "Forever", "model": "local", "conversationTtlSeconds": ttl})
    assert created.status_code == 400
    assert "conversationTtlSeconds" in created.json()["error"]["details"]["fields"]


def test_an_agent_at_the_ttl_limit_holds_a_conversation(fuzz_server: RunningServer) -> None:
    with fuzz_server.client(fuzz_server.key()) as http:
        created = http.post("/api/v1/agents", json={"name": "Decade", "model": "local", "conversationTtlSeconds": 315_360_000})
        agent = created.json()["agent"]["id"]
        answer = http.post(f"/api/v1/agents/{agent}/chat", json={"message": "hi"})
        listed = http.get(f"/api/v1/agents/{agent}/conversations")
    assert (answer.status_code, listed.status_code) == (200, 200), answer.text
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", answer.json()["expiresAt"])


# --- the body decoder --------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def field_names(kind: type) -> list[str]:
    return [field.encode_name for field in msgspec.structs.fields(kind)]


def near_valid(kind: type) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose keys are mostly the type's own fields, with arbitrary values: the paths that
    name a bad field."""
    keys = st.sampled_from(field_names(kind)) | st.text(max_size=8)
    return st.dictionaries(keys, JSON, max_size=6)


def decodes_or_validation_error(body: bytes, kind: type) -> None:
    try:
        decoded = decode_body(body, kind)
    except ValidationFailed as exc:
        fields = exc.details.fields
        assert len(fields) == 1 and all(isinstance(p, list) and p for p in fields.values())
    else:
        assert isinstance(decoded, kind)


@pytest.mark.parametrize("kind", BODY_TYPES, ids=lambda k: k.__name__)
@settings(max_examples=300, deadline=None, database=None)
@given(body=st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_fail_validation(kind: type, body: bytes) -> None:
    decodes_or_validation_error(body, kind)


@pytest.mark.parametrize("kind", BODY_TYPES, ids=lambda k: k.__name__)
@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data())
def test_arbitrary_json_decodes_or_fails_validation(kind: type, data: st.DataObject) -> None:
    value = data.draw(JSON | near_valid(kind))
    decodes_or_validation_error(msgspec.json.encode(value), kind)


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"message": ' * 50_000, b"\xff\xfe", b'{"message": "\\ud800"}'])
def test_pathological_bodies_fail_validation(body: bytes) -> None:
    for kind in BODY_TYPES:
        decodes_or_validation_error(body, kind)


def from_schema(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for the JSON Schema that msgspec generates (the subset it uses)."""
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].rsplit("/", 1)[1]], components)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, components) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if "pattern" in schema:
            return st.from_regex(schema["pattern"]).filter(lambda t: low <= len(t) <= (high or len(t)))
        return st.text(min_size=low, max_size=min(high or 40, 40))
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(from_schema(schema["items"], components), min_size=low, max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object":
        properties = {name: from_schema(s, components) for name, s in schema["properties"].items()}
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {n: s for n, s in properties.items() if n in required},
            optional={n: s for n, s in properties.items() if n not in required},
        )
    raise AssertionError(f"schema the decoder test does not know: {schema}")


def _valid_bodies(kind: type) -> st.SearchStrategy[dict[str, Any]]:
    (schema,), components = msgspec.json.schema_components([kind], ref_template="#/components/schemas/{name}")
    return from_schema(schema, components)


@pytest.mark.parametrize("kind", BODY_TYPES, ids=lambda k: k.__name__)
@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data())
def test_valid_bodies_round_trip(kind: type, data: st.DataObject) -> None:
    sent = data.draw(_valid_bodies(kind))
    decoded = decode_body(msgspec.json.encode(sent), kind)
    assert _kept(sent, msgspec.to_builtins(decoded))
    assert decode_body(msgspec.json.encode(decoded), kind) == decoded


def _kept(sent: Any, decoded: Any) -> bool:
    """Everything sent came back as sent; objects may add the defaults of fields left out."""
    if isinstance(sent, dict):
        return isinstance(decoded, dict) and all(name in decoded and _kept(v, decoded[name]) for name, v in sent.items())
    if isinstance(sent, list):
        return isinstance(decoded, list) and len(sent) == len(decoded) and all(map(_kept, sent, decoded))
    return bool(sent == decoded)
