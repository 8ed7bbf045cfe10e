"""POST /v1/chat/completions and GET /v1/models: the native turn in OpenAI's shape, read as raw HTTP.

What the official clients make of it is in tests/test_openai_clients.py; here, the exact bytes and
what reached the model (the fake provider's requests) and the store (the native read endpoints).
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.fake_openai import drop_mid_stream, error, reply

USER = {"role": "user", "content": "Remember: blue."}


def chat(http: httpx.Client, headers: dict[str, str] | None = None, **body: object) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": "agent:2", "messages": [USER], **body}, headers=headers)


def stored_messages(http: httpx.Client, agent: int, conversation: str) -> list[dict]:
    response = http.get(f"/api/v1/agents/{agent}/conversations/{conversation}/messages")
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def data_lines(raw: bytes) -> list[object]:
    out: list[object] = []
    for line in raw.decode().split("\n"):
        if line.startswith("data: "):
            payload = line[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_a_completion_is_a_stored_turn_named_by_its_message_id(client, fake_openai):  # type: ignore[no-untyped-def]
    response = chat(client)
    assert response.status_code == 200, response.text
    body = response.json()
    conversation = response.headers["chatspark-conversation-id"]
    assert body["object"] == "chat.completion" and body["model"] == "agent:2"
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice == {"index": 0, "message": {"role": "assistant", "content": "You said: Remember: blue.. I saw 2 messages.",
                                              "refusal": None}, "logprobs": None, "finish_reason": "stop"}
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    user, assistant = stored_messages(client, 2, conversation)
    assert (user["role"], user["content"]) == ("user", "Remember: blue.")
    assert body["id"] == "chatcmpl-" + assistant["id"].removeprefix("msg_")
    assert assistant["content"] == choice["message"]["content"]
    # The same rate-limit and mode headers as the native endpoint.
    assert response.headers["chatspark-mode"] == "live" and "x-ratelimit-remaining" in response.headers


def test_a_client_system_message_comes_after_the_agents_instructions(client, fake_openai):  # type: ignore[no-untyped-def]
    messages = [{"role": "system", "content": "Answer in French."}, {"role": "developer", "content": "Be brief."}, USER]
    assert chat(client, messages=messages).status_code == 200
    sent = fake_openai.requests[-1]["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith("You are a friendly sales assistant")
    assert sent[1] == {"role": "system", "content": "Answer in French.\n\nBe brief."}
    assert sent[-1] == {"role": "user", "content": "Remember: blue."}


def test_earlier_client_messages_are_context_of_a_new_conversation_but_not_stored(client, fake_openai):  # type: ignore[no-untyped-def]
    earlier = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada!"}]
    response = chat(client, messages=[*earlier, {"role": "user", "content": [{"type": "text", "text": "Who am I?"}]}])
    assert response.status_code == 200, response.text
    sent = fake_openai.requests[-1]["messages"]
    assert sent[1:] == [*earlier, {"role": "user", "content": "Who am I?"}]
    stored = stored_messages(client, 2, response.headers["chatspark-conversation-id"])
    assert [m["content"] for m in stored if m["role"] == "user"] == ["Who am I?"]


@pytest.mark.parametrize("how", ["header", "metadata"])
def test_the_conversation_header_or_metadata_continues_it_with_only_the_last_message(client, fake_openai, how):  # type: ignore[no-untyped-def]
    first = chat(client)
    conversation = first.headers["chatspark-conversation-id"]
    messages = [{"role": "user", "content": "ignored: the server holds the history"},
                {"role": "assistant", "content": "ignored too"}, {"role": "user", "content": "Color?"}]
    if how == "header":
        second = chat(client, {"chatspark-conversation-id": conversation}, messages=messages)
    else:
        second = chat(client, messages=messages, metadata={"conversation_id": conversation})
    assert second.status_code == 200, second.text
    assert second.headers["chatspark-conversation-id"] == conversation
    sent = fake_openai.requests[-1]["messages"]
    assert [m["content"] for m in sent[1:]] == ["Remember: blue.", first.json()["choices"][0]["message"]["content"],
                                                "Color?"]
    assert len(stored_messages(client, 2, conversation)) == 4


def test_an_unknown_conversation_is_a_404_in_openais_shape(client):  # type: ignore[no-untyped-def]
    response = chat(client, {"chatspark-conversation-id": "B" * 32})
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "No such conversation for this agent (unknown or expired).",
                                         "type": "not_found_error", "code": "RESOURCE_NOT_FOUND", "param": None}}


def test_temperature_and_max_tokens_reach_the_model_bounded_by_its_output_budget(client, fake_openai):  # type: ignore[no-untyped-def]
    assert chat(client, temperature=0.7, max_tokens=50).status_code == 200
    assert (fake_openai.requests[-1]["temperature"], fake_openai.requests[-1]["max_tokens"]) == (0.7, 50)
    assert chat(client, max_completion_tokens=1_000_000).status_code == 200
    assert fake_openai.requests[-1]["max_tokens"] == 4096  # gpt-4o-mini's max_output_tokens in config.toml
    assert chat(client).status_code == 200
    assert fake_openai.requests[-1]["max_tokens"] == 4096


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"stop": ["\n"]}, "stop"),
    ({"frobnicate": 1}, "frobnicate"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
    ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "c1"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content"),
    ({"messages": []}, "messages"),
    ({"temperature": 3}, "temperature"),
    ({"model": "no such agent"}, "model"),
])
def test_what_the_endpoint_cannot_honour_is_a_400_naming_the_parameter(client, fake_openai, extra, param):  # type: ignore[no-untyped-def]
    seen = len(fake_openai.requests)
    response = chat(client, **extra)
    assert response.status_code == 400, response.text
    error_body = response.json()["error"]
    assert (error_body["type"], error_body["code"], error_body["param"]) == ("invalid_request_error", "VALIDATION_ERROR", param)
    assert len(fake_openai.requests) == seen  # refused before the model was called


def test_harmless_values_of_unsupported_parameters_are_accepted(client):  # type: ignore[no-untyped-def]
    response = chat(client, n=1, top_p=1, presence_penalty=0, tool_choice="none", response_format={"type": "text"},
                    user="end-user-7", store=False, logprobs=False)
    assert response.status_code == 200, response.text


def test_model_names_an_agent_by_id_or_by_its_unique_name(server, fake_openai):  # type: ignore[no-untyped-def]
    with server.client(server.key(agents=[1, 2])) as http:
        for model in ("agent:2", "ag_2", "Sales Assistant"):
            response = chat(http, model=model)
            assert response.status_code == 200, (model, response.text)
            assert response.json()["model"] == "agent:2"
        denied = chat(http, model="agent:3")
        assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
        unseen = chat(http, model="Expert Assistant")  # agent 3's name: not one this key may use
        assert unseen.status_code == 400 and unseen.json()["error"]["param"] == "model"
    with server.client(server.key()) as http:
        missing = chat(http, model="agent:999999")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "AGENT_NOT_FOUND"


def test_models_lists_the_agents_the_key_may_use(server):  # type: ignore[no-untyped-def]
    with server.client(server.key(agents=[1, 3], scopes=["chat"])) as http:
        response = http.get("/v1/models")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert sorted(m["id"] for m in body["data"]) == ["agent:1", "agent:3"]
    assert all(m["object"] == "model" and m["owned_by"] == "chatspark" and m["created"] > 0 for m in body["data"])
    with server.client(server.key(scopes=["agents:read"])) as http:
        assert http.get("/v1/models").status_code == 200
        refused = chat(http)  # listing is not chatting
    assert refused.status_code == 403
    assert refused.json()["error"] == {"message": "This endpoint needs the 'chat' scope.", "type": "permission_error",
                                       "code": "API_KEY_SCOPE_INSUFFICIENT", "param": None}
    with server.client(server.key(scopes=["leads"])) as http:
        assert http.get("/v1/models").status_code == 403


def test_auth_errors_are_401_in_openais_shape(server):  # type: ignore[no-untyped-def]
    with server.client() as http:
        missing = chat(http)
        invalid = http.get("/v1/models", headers={"authorization": "Bearer cs_live_" + "x" * 40})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "API_KEY_MISSING"
    assert invalid.status_code == 401 and invalid.json()["error"]["type"] == "authentication_error"
    assert "x-request-id" in invalid.headers


def test_rate_limit_is_a_429_with_retry_after(server):  # type: ignore[no-untyped-def]
    with server.client(server.key(rate_limit=1)) as http:
        assert http.get("/v1/models").status_code == 200
        limited = chat(http)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limit_error"


def test_a_monthly_cap_counts_completions_like_native_turns(server):  # type: ignore[no-untyped-def]
    with server.client(server.key(monthly_cap=1)) as http:
        assert chat(http, model="agent:1").status_code == 200
        capped = chat(http, model="agent:1")
        native = http.post("/api/v1/agents/1/chat", json={"message": "hi"})
    assert capped.status_code == 402 and capped.json()["error"]["code"] == "CREDITS_EXHAUSTED"
    assert native.status_code == 402


def test_an_upstream_failure_is_a_502(client, fake_openai):  # type: ignore[no-untyped-def]
    fake_openai.enqueue(error(500))
    response = chat(client)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error" and response.json()["error"]["code"] == "UPSTREAM_ERROR"


def test_stream_is_chunks_with_role_first_finish_reason_usage_and_done(live_client, fake_openai):  # type: ignore[no-untyped-def]
    fake_openai.enqueue(reply('one "two"\nthree'))
    body = {"model": "agent:2", "messages": [USER], "stream": True, "stream_options": {"include_usage": True}}
    with live_client.stream("POST", "/v1/chat/completions", json=body) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    conversation = response.headers["chatspark-conversation-id"]
    assert raw.endswith(b"data: [DONE]\n\n") and b"\r" not in raw
    events = data_lines(raw)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert all(set(c) == {"id", "object", "created", "model", "choices", "usage"} for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and {c["model"] for c in chunks} == {"agent:2"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    *content, finish, usage = chunks
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in content) == 'one "two"\nthree'
    assert all(c["choices"][0]["finish_reason"] is None and c["usage"] is None for c in content)
    assert finish["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] > 0
    [_, assistant] = stored_messages(live_client, 2, conversation)
    assert chunks[0]["id"] == "chatcmpl-" + assistant["id"].removeprefix("msg_")


def test_stream_without_include_usage_has_no_usage_field(live_client):  # type: ignore[no-untyped-def]
    with live_client.stream("POST", "/v1/chat/completions",
                            json={"model": "agent:1", "messages": [USER], "stream": True}) as response:
        raw = b"".join(response.iter_raw())
    chunks = data_lines(raw)[:-1]
    assert chunks and all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_failure_mid_stream_is_an_error_event_then_done(live_client, fake_openai):  # type: ignore[no-untyped-def]
    fake_openai.enqueue(drop_mid_stream(after_chunks=2))
    with live_client.stream("POST", "/v1/chat/completions",
                            json={"model": "agent:2", "messages": [USER], "stream": True}) as response:
        raw = b"".join(response.iter_raw())
    events = data_lines(raw)
    assert events[-1] == "[DONE]"
    failure = events[-2]
    assert set(failure) == {"error"}
    assert failure["error"]["code"] == "STREAMING_ERROR" and failure["error"]["type"] == "api_error"
    assert not any(isinstance(e, dict) and e.get("choices", [{}])[0].get("finish_reason") for e in events[:-2])


def test_an_idempotency_key_runs_the_turn_once_and_replays_it(client, fake_openai):  # type: ignore[no-untyped-def]
    seen = len(fake_openai.requests)
    headers = {"idempotency-key": "openai-retry-1"}
    first = chat(client, headers)
    again = chat(client, headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == {**first.json(), "created": again.json()["created"]}
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["chatspark-conversation-id"] == first.headers["chatspark-conversation-id"]
    assert len(fake_openai.requests) == seen + 1
    other = chat(client, headers, temperature=1.5)
    assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"


def test_an_idempotent_stream_replays_the_same_chunks(live_client, fake_openai):  # type: ignore[no-untyped-def]
    body = {"model": "agent:2", "messages": [USER], "stream": True}
    headers = {"idempotency-key": "openai-stream-retry"}
    raws = []
    for _ in range(2):
        with live_client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            raws.append((response.headers.get("chatspark-conversation-id"), data_lines(b"".join(response.iter_raw()))))
    (first_conversation, first), (second_conversation, second) = raws
    assert first_conversation and first_conversation == second_conversation
    assert [(c["id"], c["choices"]) for c in first[:-1]] == [(c["id"], c["choices"]) for c in second[:-1]]
    [_, assistant] = stored_messages(live_client, 2, first_conversation)
    assert first[0]["id"] == "chatcmpl-" + assistant["id"].removeprefix("msg_")


def test_a_completion_counts_in_analytics_like_a_native_turn(server):  # type: ignore[no-untyped-def]
    with server.client(server.key()) as http:
        created = http.post("/api/v1/agents", json={"name": "Analytics via OpenAI", "model": "local"})
        assert created.status_code == 201, created.text
        agent = created.json()["agent"]["id"]

        def totals() -> tuple[int, int]:
            body = http.get(f"/api/v1/agents/{agent}/analytics").json()
            return body["totalMessages"], body["totalConversations"]

        assert totals() == (0, 0)
        assert chat(http, model=f"agent:{agent}").status_code == 200
        assert totals() == (2, 1)
        assert http.post(f"/api/v1/agents/{agent}/chat", json={"message": "hi"}).status_code == 200
        assert totals() == (4, 2)


def test_a_key_used_again_after_its_record_expired_runs_and_stores_a_new_turn(start_server):  # type: ignore[no-untyped-def]
    # Records kept 1 s (default 24 h); the wait below is 3x that.
    server = start_server(store={"idempotency_seconds": 1})
    with server.client(server.key()) as http:
        conversation = chat(http, model="agent:1").headers["chatspark-conversation-id"]
        headers = {"idempotency-key": "reused-a-day-later", "chatspark-conversation-id": conversation}
        first = chat(http, headers, model="agent:1")
        assert chat(http, headers, model="agent:1").json()["id"] == first.json()["id"]  # a retry: replayed
        time.sleep(3)
        later = chat(http, headers, model="agent:1")
        assert later.status_code == 200 and "idempotent-replayed" not in later.headers
        assert later.json()["id"] != first.json()["id"]
        assert len(stored_messages(http, 1, conversation)) == 6  # three turns, none taken for a retried write
