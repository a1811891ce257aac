"""The OpenAPI document: what FastAPI infers, plus what it cannot see.

FastAPI cannot see that the ingest endpoints read their body by hand, that a dependency
checks the token, or which errors each operation answers with. This module adds them:
the request and response schemas of the ingest endpoints (taken from the adapters'
models), the two HTTP security schemes, and the error responses with their body.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from incidents.ingest.schemas import AMPayload, GenericAlert, GenericEnvelope

from . import examples
from .principal import declared_scopes
from .schemas import ErrorBody, IngestResult, error_response

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (or the bootstrap `INCIDENTS_API_TOKEN`) as a bearer token.",
    },
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "Any user name, with the API key as the password.",
    },
}
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"basicAuth": []}]

DESCRIPTION = """\
Alert ingestion from Prometheus Alertmanager (and any other source), correlation into
incidents through a service dependency graph, and silences.

**Authentication.** Every `/api/` operation needs an API key with the operation's scope
(named in its description): `Authorization: Bearer <key>`, or basic auth with any user
name and the key as the password. The scopes are `alerts:write` (senders),
`incidents:read`, `incidents:write` (acting on incidents, silences), `config:write` (graph,
policies, users, schedules, heartbeats) and `admin` (API keys; implies every scope). A
missing or invalid key is a 401; a key without the scope a 403. Use the Authorize button
to try the operations here.

**Errors.** Every error has the same JSON body: `error` (a stable code), `message` (for a
person, starting with the field at fault), `field` (the parameter or body field, when
one is at fault) and, on validation errors, `errors` (every problem found). A `503` means
trouble on our side: nothing was stored, retry after `Retry-After` seconds.
"""

TAGS: list[dict[str, str]] = [
    {"name": "ingest", "description": "Alerts in: Alertmanager's webhook and a generic format."},
    {"name": "alerts", "description": "Stored alerts, filtered by labels, state and service."},
    {"name": "incidents", "description": "Incidents built from correlated alerts."},
    {"name": "services", "description": "The service dependency graph."},
    {"name": "silences", "description": "Silences and maintenance windows."},
    {
        "name": "silences (Alertmanager v2 API)",
        "description": "Our silences in Alertmanager's shape, for amtool and Grafana.",
    },
    {
        "name": "alerts (Alertmanager v2 API)",
        "description": "Firing alerts in Alertmanager's shape, read-only, for `amtool alert`.",
    },
    {"name": "users", "description": "Who can be on call, and how to reach them."},
    {
        "name": "schedules",
        "description": "On-call schedules: who is on call, shifts, overrides, calendar feeds.",
    },
    {
        "name": "heartbeats",
        "description": "Dead man's switches: pinged, or an incident opens when they are not.",
    },
    {"name": "api keys", "description": "Make, list and revoke API keys (`admin` scope)."},
    {"name": "operations", "description": "Liveness, readiness and metrics (no key)."},
]

# The ingest endpoints read their body themselves, fast; their schemas come from the
# adapters' models, which are what validates the body.
_INGEST: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/v1/alerts/alertmanager", "post"): {
        "description": "An Alertmanager webhook notification, payload version 4.",
        "schema": {"$ref": "#/components/schemas/AMPayload"},
        "examples": {
            "firing": {
                "summary": "One firing alert",
                "value": examples.ALERTMANAGER_WEBHOOK,
            }
        },
    },
    ("/api/v1/alerts", "post"): {
        "description": 'Alerts as `{"alerts": [...]}`, or a bare JSON list of alerts.',
        "schema": {
            "oneOf": [
                {"$ref": "#/components/schemas/GenericEnvelope"},
                {"type": "array", "items": {"$ref": "#/components/schemas/GenericAlert"}},
            ]
        },
        "examples": {
            "envelope": {
                "summary": "An object with an alerts list",
                "value": examples.GENERIC_ALERTS,
            },
            "list": {"summary": "A bare list", "value": examples.GENERIC_ALERTS_LIST},
        },
    },
}

_FASTAPI_422 = "#/components/schemas/HTTPValidationError"

_STATUS_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {"status": {"type": "string", "description": "`ok`, or `unavailable`."}},
    "required": ["status"],
}
_CHECK: dict[str, Any] = {
    "type": "object",
    "description": "One dependency: `status` (`ok` or `down`), `latency_ms`, and why it is down.",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "down"]},
        "latency_ms": {"type": "number"},
    },
    "required": ["status"],
}
_READY_BODY: dict[str, Any] = {
    **_STATUS_BODY,
    "properties": {
        **_STATUS_BODY["properties"],
        "checks": {
            "type": "object",
            "properties": {"database": _CHECK, "broker": _CHECK},
            "description": "Each dependency by name.",
        },
    },
}

# The operations endpoints answer without a model; their bodies are documented here.
_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/healthz", "get"): {
        "200": {
            "description": "The process serves requests.",
            "content": {"application/json": {"schema": _STATUS_BODY}},
        }
    },
    ("/readyz", "get"): {
        "200": {
            "description": "Every dependency answers.",
            "content": {"application/json": {"schema": _READY_BODY}},
        },
        "503": {
            "description": "A dependency does not answer; `checks` says which.",
            "content": {"application/json": {"schema": _READY_BODY}},
        },
    },
    ("/metrics", "get"): {
        "200": {
            "description": "Metrics in the Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
}


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json) build the complete document, once."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=DESCRIPTION,
                routes=app.routes,
                tags=TAGS,
            )
            complete(document)
            add_scopes(document, app)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> None:
    """Add schemas, security and error responses to a document FastAPI generated."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(
        _model_schemas(AMPayload, GenericEnvelope, GenericAlert, ErrorBody, IngestResult)
    )
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            _complete_operation(path, method, operation)
    if _FASTAPI_422 not in repr(document["paths"]):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


def _complete_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    # FastAPI documents a body only where a model parses it; the others read it by hand.
    raw_body = method in ("post", "put", "patch") and "requestBody" not in operation
    ingest = _INGEST.get((path, method))
    if ingest is not None:
        operation["requestBody"] = {
            "required": True,
            "description": ingest["description"],
            "content": {
                "application/json": {"schema": ingest["schema"], "examples": ingest["examples"]}
            },
        }
        operation["responses"]["200"] = {
            "description": "Stored (or recognised as a duplicate) and committed.",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/IngestResult"},
                    "examples": {
                        "accepted": {"value": examples.INGEST_ACCEPTED},
                        "duplicate": {"value": examples.INGEST_DUPLICATE},
                    },
                }
            },
        }
    operation["responses"].update(_OPERATIONS.get((path, method), {}))
    if path.startswith("/feeds/"):
        # Opened by the link's own token, not a key: no 401, and no security scheme.
        statuses = {403, 404, 422, 503}
    elif not path.startswith("/api/"):
        return
    else:
        operation.setdefault("security", SECURITY)
        statuses = {401, 403, 503}
    if operation.get("parameters") or "requestBody" in operation or raw_body:
        statuses.add(422)
    if "{" in path:
        statuses.add(404)
    if method in ("post", "put", "patch"):
        # A body that is empty, not JSON or not UTF-8 is a 400; one too large a 413.
        statuses |= {400, 413}
    responses = operation["responses"]
    if path.startswith("/api/v2/"):
        # Alertmanager's API shape: bad input is a 400 and an unknown id a 404, each with
        # the message as a JSON string (what amtool displays); there is no 422.
        statuses.discard(422)
        responses.pop("422", None)
        for status in (400, 404):
            if status in statuses or str(status) in responses:
                statuses.discard(status)
                described = responses.get(str(status), {}).get("description")
                responses[str(status)] = {
                    "description": described or HTTPStatus(status).phrase,
                    "content": {"application/json": {"schema": {"type": "string"}}},
                }
    for status in sorted(statuses):
        existing = responses.get(str(status))
        if existing is None or _FASTAPI_422 in repr(existing):
            responses[str(status)] = error_response(status)


def add_scopes(document: dict[str, Any], app: FastAPI) -> None:
    """Name each operation's scope in its description and as `x-required-scope`."""
    for route in iter_route_contexts(app.routes):
        scopes = declared_scopes(route)
        operations = document["paths"].get(getattr(route, "path_format", None) or "", {})
        for method in getattr(route, "methods", None) or ():
            operation = operations.get(method.lower())
            if operation is None or not scopes:
                continue
            operation["x-required-scope"] = scopes[0]
            needs = f"Needs a key with the scope `{scopes[0]}` (or `admin`)."
            described = operation.get("description")
            operation["description"] = f"{described}\n\n{needs}" if described else needs


def _model_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    defs: dict[str, Any] = top.get("$defs", {})
    return defs
