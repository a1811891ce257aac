"""The OpenAPI document: security, error bodies, ingest schemas, descriptions, the docs page."""

from __future__ import annotations

import ast
import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from incidents.api import examples
from incidents.api.schemas import IngestResult
from incidents.ingest.schemas import AMPayload, GenericEnvelope
from incidents.vocab import TimelineKind
from tests.conftest import AUTH, ROOT, TOKEN

# No key: operations, and the calendar feed that a secret link's own token opens.
PUBLIC = {"/healthz", "/readyz", "/metrics", "/feeds/schedules/{name}.ics"}
ERROR_REF = "#/components/schemas/ErrorBody"


@pytest.fixture
def app_client(sqlite_url: str, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(sqlite_url)


@pytest.fixture
def document(app_client: TestClient) -> dict[str, Any]:
    response = app_client.get("/openapi.json")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def test_security_schemes_are_declared_and_applied_to_the_api(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["basicAuth"]["type"] == "http"
    assert schemes["basicAuth"]["scheme"] == "basic"
    seen = set()
    for path, method, operation in _operations(document):
        seen.add(path)
        if path.startswith("/api/"):
            assert operation["security"] == [{"bearerAuth": []}, {"basicAuth": []}], (path, method)
        else:
            assert path in PUBLIC, path
            assert "security" not in operation, path
    assert seen >= PUBLIC


def test_the_declared_schemes_are_the_ones_the_api_accepts(app_client: TestClient) -> None:
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    for header in [f"Bearer {TOKEN}", f"Basic {basic}"]:
        response = app_client.get("/api/v1/incidents", headers={"Authorization": header})
        assert response.status_code == 200, (header, response.text)
    assert app_client.get("/api/v1/incidents").status_code == 401


def test_every_api_operation_documents_its_errors(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        if not path.startswith("/api/"):
            continue
        responses = operation["responses"]
        expected = {"401", "503"}
        if operation.get("parameters") or "requestBody" in operation:
            expected.add("422")
        if "{" in path:
            expected.add("404")
        if method in ("post", "put", "patch"):
            expected |= {"400", "413"}
        if path.startswith("/api/v2/"):
            # Alertmanager's shape: 400 and 404 carry the message as a JSON string.
            expected.discard("422")
            assert "422" not in responses, (path, method)
            for status in {"400", "404"} & expected:
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == {"type": "string"}, (path, method, status)
            expected -= {"400", "404"}
        assert expected <= set(responses), (path, method, sorted(responses))
        for status in expected:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, (path, method, status)
            assert responses[status]["description"]
        assert "Retry-After" in responses["503"]["headers"]
        assert "WWW-Authenticate" in responses["401"]["headers"]
    # FastAPI's own 422 body is not what the API sends; it must be gone everywhere.
    assert "HTTPValidationError" not in json.dumps(document)
    error = document["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "message"}
    assert {"error", "message", "field", "errors"} <= set(error["properties"])


def test_the_error_body_matches_what_the_api_sends(app_client: TestClient) -> None:
    unauthorized = app_client.get("/api/v1/alerts")
    assert unauthorized.status_code == 401
    assert set(unauthorized.json()) <= {"error", "message", "field", "errors"}
    invalid = app_client.get("/api/v1/alerts", params={"limit": "0"}, headers=AUTH)
    assert invalid.status_code == 422
    body = invalid.json()
    assert set(body) == {"error", "message", "field", "errors"}
    assert body["errors"][0] == {"field": "limit", "message": body["errors"][0]["message"]}


def test_ingest_operations_have_request_and_response_schemas(document: dict[str, Any]) -> None:
    webhook = document["paths"]["/api/v1/alerts/alertmanager"]["post"]
    content = webhook["requestBody"]["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/AMPayload"}
    assert content["examples"]["firing"]["value"] == examples.ALERTMANAGER_WEBHOOK
    generic = document["paths"]["/api/v1/alerts"]["post"]["requestBody"]["content"]
    refs = json.dumps(generic["application/json"]["schema"])
    assert "GenericEnvelope" in refs and "GenericAlert" in refs
    schemas = document["components"]["schemas"]
    # The schemas are the adapters' own models, so they describe what is validated.
    assert set(schemas["AMPayload"]["required"]) == {
        name for name, field in AMPayload.model_fields.items() if field.is_required()
    }
    assert "alerts" in schemas["GenericEnvelope"]["properties"]
    for path in ("/api/v1/alerts/alertmanager", "/api/v1/alerts"):
        ok = document["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"] == {"$ref": "#/components/schemas/IngestResult"}
        assert set(ok["examples"]) == {"accepted", "duplicate"}
    result = schemas["IngestResult"]
    assert result["properties"]["status"]["enum"] == ["accepted", "duplicate"]
    assert set(result["required"]) == {"status", "alerts", "fingerprints"}


def test_the_webhook_example_is_the_shipped_example_file() -> None:
    shipped = orjson.loads((ROOT / "examples" / "alertmanager-webhook.json").read_bytes())
    assert shipped == examples.ALERTMANAGER_WEBHOOK


def test_the_documented_examples_are_accepted_as_documented(app_client: TestClient) -> None:
    AMPayload.model_validate(examples.ALERTMANAGER_WEBHOOK)
    GenericEnvelope.model_validate(examples.GENERIC_ALERTS)
    for path, body in [
        ("/api/v1/alerts/alertmanager", examples.ALERTMANAGER_WEBHOOK),
        ("/api/v1/alerts", examples.GENERIC_ALERTS),
        ("/api/v1/alerts", examples.GENERIC_ALERTS_LIST),
    ]:
        response = app_client.post(path, content=orjson.dumps(body), headers=AUTH)
        assert response.status_code == 200, (path, response.text)
        result = IngestResult.model_validate(response.json())
        assert result.status == "accepted"
        assert set(response.json()) == {"status", "alerts", "fingerprints"}
    again = app_client.post(
        "/api/v1/alerts/alertmanager",
        content=orjson.dumps(examples.ALERTMANAGER_WEBHOOK),
        headers=AUTH,
    )
    assert again.json() == examples.INGEST_DUPLICATE


def _referenced(node: Any) -> list[str]:
    return re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(node))


def test_every_field_of_every_response_model_is_described(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    todo = [
        name
        for _, _, operation in _operations(document)
        for name in _referenced(operation["responses"])
    ]
    seen: set[str] = set()
    undescribed: dict[str, list[str]] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        schema = schemas[name]
        todo.extend(_referenced(schema))
        missing = [p for p, s in schema.get("properties", {}).items() if not s.get("description")]
        if missing:
            undescribed[name] = missing
    assert {"AlertOut", "IncidentDetail", "TimelineOut", "ErrorBody", "IngestResult"} <= seen
    assert not undescribed, undescribed


def test_timeline_kinds_are_an_enum_in_the_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    kind = schemas["TimelineOut"]["properties"]["kind"]
    assert kind["$ref"] == "#/components/schemas/TimelineKind"
    for value in TimelineKind:
        assert f"`{value.value}`" in kind["description"]
    assert schemas["TimelineKind"]["enum"] == [k.value for k in TimelineKind]


def _kinds_written_by_the_pipeline() -> set[str]:
    """The kinds passed to the timeline writers (`note`, `entry`): always enum members."""
    kinds: set[str] = set()
    for path in (ROOT / "incidents").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name == "note" and len(node.args) >= 3:
                value = node.args[2]
            elif name == "entry" and len(node.args) >= 2:
                value = node.args[1]
            else:
                continue
            if isinstance(value, ast.Name) and value.id == "kind":
                continue  # a writer handing its own typed `kind` parameter on
            assert isinstance(value, ast.Attribute), f"{path}:{node.lineno}: not a TimelineKind"
            assert getattr(value.value, "id", None) == "TimelineKind", f"{path}:{node.lineno}"
            kinds.add(TimelineKind[value.attr].value)
    return kinds


def test_the_enum_holds_every_kind_the_pipeline_writes() -> None:
    written = _kinds_written_by_the_pipeline()
    assert {"opened", "resolved", "alert_joined", "merged", "storm", "rerooted"} <= written


def test_root_redirects_to_the_docs(app_client: TestClient) -> None:
    response = app_client.get("/", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/docs"
    followed = app_client.get("/")
    assert followed.url.path == "/docs"
    assert "swagger-ui-bundle.js" in followed.text


def test_the_docs_page_loads_only_local_assets(app_client: TestClient) -> None:
    page = app_client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), html
    assert '"validatorUrl": null' in html
    assets = re.findall(r"""(?:src|href)="([^"]+)\"""", html)
    assert {a.rsplit("/", 1)[1] for a in assets} == {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "favicon.png",
    }
    for asset in assets:
        response = app_client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 1000, asset
    assert "'/openapi.json'" in html
