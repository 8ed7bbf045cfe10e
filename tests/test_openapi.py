"""GET /openapi.json: a valid OpenAPI 3.1 document, generated from the wire types, in step with the routes."""

from __future__ import annotations

import msgspec
import schemathesis
from starlette.applications import Starlette
from starlette.routing import Route

from chatspark.api import widget_assets
from chatspark.config import load_config
from chatspark.openapi import ERROR_STATUS, document
from chatspark.web import create_app
from tests.conftest import InProcessServer

PUBLIC = {("GET", "/api/v1/health"), ("GET", "/openapi.json")}


def documented_operations(doc: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, methods in doc["paths"].items() for method in methods}


def test_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()  # raises on any violation of the OpenAPI 3.1 schema


def test_document_covers_exactly_the_app_routes() -> None:
    app = create_app(load_config(environ={}))
    while not isinstance(app, Starlette):  # through the middleware that wraps it
        app = app.app  # type: ignore[attr-defined]
    routed = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD" and route.path not in widget_assets.PATHS  # a script and pages, not API operations
    }
    assert routed  # the comparison below is not vacuous
    assert documented_operations(document()) == routed


def test_served_document_is_the_generated_one_without_auth(server: InProcessServer) -> None:
    with server.client() as anonymous:  # no Authorization header
        first = anonymous.get("/openapi.json")
        second = anonymous.get("/openapi.json")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-request-id"]
    expected = document(server.config.server.max_message_chars, tuple(server.config.models))
    assert first.json() == msgspec.json.decode(msgspec.json.encode(expected))
    assert second.content == first.content


def test_an_agent_model_must_name_a_configured_model(server: InProcessServer) -> None:
    with server.client() as http:
        served = http.get("/openapi.json").json()
    model = served["components"]["schemas"]["AgentChanges"]["properties"]["model"]
    assert model == {"anyOf": [{"enum": list(server.config.models)}, {"type": "null"}]}
    with server.client(server.key()) as http:
        refused = http.post("/api/v1/agents", json={"name": "Unknown model", "model": "not-configured"})
    assert refused.status_code == 400 and "model" in refused.json()["error"]["details"]["fields"]


def test_document_is_built_once() -> None:
    assert document() is document()


def test_bearer_auth_on_every_operation_but_health_and_the_document() -> None:
    doc = document()
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "cs_live_… or cs_test_…"
    }
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if (method.upper(), path) in PUBLIC:
                assert op["security"] == [], path
                assert "401" not in op["responses"], path
            elif path.startswith("/api/v1/widget/"):
                # Browsers: never a key; the origin rule answers 403 to anyone else.
                assert op["security"] == [], path
                assert any(p["name"] == "Origin" and p["required"] for p in op["parameters"]), (method, path)
                assert "403" in op["responses"], (method, path)
            else:
                assert "security" not in op, path  # inherits the document's bearer requirement
                assert {"401", "403", "429", "500", "503"} <= set(op["responses"]), (method, path)
                # Two Authorization headers are refused before any key is looked at.
                assert "VALIDATION_ERROR" in op["responses"]["400"]["description"], (method, path)


def test_request_bodies_come_from_the_wire_types() -> None:
    doc = document()
    paths = doc["paths"]
    ref = "#/components/schemas/{}".format

    def body(method: str, path: str) -> dict:
        return paths[path][method]["requestBody"]["content"]["application/json"]["schema"]

    assert body("post", "/api/v1/agents/{agent_id}/chat") == {"$ref": ref("ChatRequest")}
    assert body("patch", "/api/v1/agents/{agent_id}") == {"$ref": ref("AgentChanges")}
    assert body("post", "/api/v1/agents") == {"allOf": [{"$ref": ref("AgentChanges")}, {"required": ["name"]}]}
    feedback = "/api/v1/agents/{agent_id}/conversations/{conversation_id}/messages/{message_id}/feedback"
    assert body("post", feedback) == {"$ref": ref("FeedbackRequest")}
    schemas = doc["components"]["schemas"]
    assert schemas["ChatRequest"]["additionalProperties"] is False
    assert schemas["ChatRequest"]["required"] == ["message"]
    assert schemas["ChatRequest"]["properties"]["message"]["maxLength"] == 32_000
    assert schemas["FeedbackRequest"]["properties"]["rating"] == {
        "anyOf": [{"enum": ["negative", "positive"]}, {"type": "null"}]
    }
    assert "gaID" in schemas["AgentChanges"]["properties"]
    assert body("post", "/api/v1/agents/{agent_id}/leads") == {"allOf": [{"$ref": ref("NewLead")}, {"anyOf": [
        {"required": ["email"], "properties": {"email": {"type": "string"}}},
        {"required": ["phone"], "properties": {"phone": {"type": "string"}}},
    ]}]}
    lead = schemas["NewLead"]
    assert lead["additionalProperties"] is False and not lead.get("required")
    assert set(lead["properties"]) == {"name", "email", "phone", "companyName", "message", "conversationId"}


def test_success_answers_reference_their_types() -> None:
    paths = document()["paths"]
    expected = {
        ("get", "/api/v1/health", "200"): "Health",
        ("post", "/api/v1/agents/{agent_id}/chat", "200"): "ChatResponse",
        ("get", "/api/v1/agents", "200"): "AgentsPage",
        ("post", "/api/v1/agents", "201"): "AgentEnvelope",
        ("get", "/api/v1/agents/{agent_id}", "200"): "AgentEnvelope",
        ("patch", "/api/v1/agents/{agent_id}", "200"): "AgentEnvelope",
        ("get", "/api/v1/agents/{agent_id}/conversations", "200"): "ConversationsPage",
        ("get", "/api/v1/agents/{agent_id}/conversations/{conversation_id}", "200"): "ConversationEnvelope",
        ("get", "/api/v1/agents/{agent_id}/conversations/{conversation_id}/messages", "200"): "MessagesPage",
        ("get", "/api/v1/agents/{agent_id}/leads", "200"): "LeadsPage",
        ("post", "/api/v1/agents/{agent_id}/leads", "201"): "LeadEnvelope",
    }
    for (method, path, status), name in expected.items():
        content = paths[path][method]["responses"][status]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{name}"}
    chat = paths["/api/v1/agents/{agent_id}/chat"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in chat
    for method, path in (("delete", "/api/v1/agents/{agent_id}"),
                         ("delete", "/api/v1/agents/{agent_id}/conversations/{conversation_id}")):
        assert "content" not in paths[path][method]["responses"]["204"]


def test_every_error_answer_is_the_envelope_with_a_contract_code() -> None:
    """The OpenAI-compatible operations (/v1/…) answer OpenAI's error shape, with the same codes."""
    doc = document()
    seen_statuses = set()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            for status, answer in op["responses"].items():
                assert answer["headers"]["x-request-id"] == {"$ref": "#/components/headers/x-request-id"}
                if int(status) < 400 or path == "/api/v1/health":
                    continue
                seen_statuses.add(int(status))
                envelope = {"$ref": "#/components/schemas/" + ("OpenAIError" if path.startswith("/v1/") else "ErrorEnvelope")}
                assert answer["content"]["application/json"]["schema"] == envelope, (method, path, status)
                for code in answer["description"].split(" or "):
                    assert ERROR_STATUS[code] == int(status), (method, path, status, code)
    codes = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
    assert set(codes) == set(ERROR_STATUS)
    openai_error = doc["components"]["schemas"]["OpenAIErrorBody"]
    assert set(openai_error["required"]) == {"message", "type", "code"}
    # Every status the contract lists, except 405 (a path's, not an operation's) and STREAMING_ERROR's 500 in-stream.
    assert seen_statuses == {400, 401, 402, 403, 404, 409, 413, 415, 429, 500, 502, 503, 504}


def test_every_operation_with_a_body_documents_the_415_for_a_body_that_is_not_json() -> None:
    for path, methods in document()["paths"].items():
        for method, op in methods.items():
            if "requestBody" in op:
                assert op["responses"]["415"]["description"] == "UNSUPPORTED_MEDIA_TYPE", (method, path)
            else:
                assert "415" not in op["responses"], (method, path)


def test_chat_create_agent_add_source_and_capture_lead_take_an_idempotency_key() -> None:
    doc = document()
    with_key = {
        (method.upper(), path)
        for path, methods in doc["paths"].items()
        for method, op in methods.items()
        if any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in op["parameters"])
    }
    assert with_key == {
        ("POST", "/api/v1/agents/{agent_id}/chat"), ("POST", "/api/v1/agents"), ("POST", "/api/v1/agents/{agent_id}/training"),
        ("POST", "/api/v1/widget/{agent_id}/chat"), ("POST", "/api/v1/widget/{agent_id}/leads"),
        ("POST", "/api/v1/agents/{agent_id}/leads"), ("POST", "/v1/chat/completions"),
    }


def test_lists_take_limit_and_cursor() -> None:
    doc = document()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            query = {p["name"]: p["schema"] for p in op["parameters"] if p["in"] == "query"}
            lists = ("/agents", "/conversations", "/messages", "/training", "/leads", "/webhooks", "/deliveries")
            if path.endswith(lists) and method == "get":
                assert query == {
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    "cursor": {"type": "string", "maxLength": 512},
                }, path
            elif path.endswith("/analytics"):  # a period, not a page
                assert set(query) == {"start", "end"}, path
            else:
                assert query == {}, (method, path)


def test_path_parameters_are_declared() -> None:
    for path, methods in document()["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for op in methods.values():
            assert {p["name"] for p in op["parameters"] if p["in"] == "path"} == names, path


def test_health_degraded_answer_is_documented() -> None:
    health = document()["paths"]["/api/v1/health"]["get"]["responses"]
    assert set(health) == {"200", "503"}
    assert health["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Health"}


def test_unknown_path_next_to_the_document_is_an_enveloped_404(server: InProcessServer) -> None:
    with server.client() as anonymous:
        response = anonymous.get("/openapi.yaml")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"


def test_x_request_id_is_any_string_echoed_or_replaced_never_refused() -> None:
    for methods in document()["paths"].values():
        for op in methods.values():
            (request_id,) = [p for p in op["parameters"] if p["name"] == "x-request-id"]
            # A pattern or a length limit would promise a 400 the service never answers.
            assert request_id["schema"] == {"type": "string"}
            assert "Echoed when printable" in request_id["description"] and "128" in request_id["description"]


def test_cursors_are_server_issued_and_linked_from_next_cursor() -> None:
    doc = document()
    ids = {op["operationId"]: (method, path) for path, methods in doc["paths"].items() for method, op in methods.items()}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if not any(p["name"] == "cursor" for p in op["parameters"]):
                continue
            (cursor,) = [p for p in op["parameters"] if p["name"] == "cursor"]
            assert cursor["description"].startswith("Server-issued: the `nextCursor`")
            next_page = op["responses"]["200"]["links"]["NextPage"]
            assert ids[next_page["operationId"]] == (method, path)
            assert next_page["parameters"]["cursor"] == "$response.body#/nextCursor"


def test_links_name_real_operations_and_their_parameters() -> None:
    doc = document()
    by_id = {op["operationId"]: op for methods in doc["paths"].values() for op in methods.values()}
    links = [link for methods in doc["paths"].values() for op in methods.values()
             for answer in op["responses"].values() for link in answer.get("links", {}).values()]
    assert len(links) > 10
    for link in links:
        target = by_id[link["operationId"]]
        assert set(link["parameters"]) <= {p["name"] for p in target["parameters"]}, link
