"""OpenAPI schemas and examples of the service graph endpoints (documentation only).

The routes validate the graph themselves (YAML or JSON, with line numbers), so these
models describe the shapes for readers and clients; they do not parse requests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from .schemas import ErrorBody

GRAPH_EXAMPLE: Final[dict[str, Any]] = {
    "services": [
        {
            "name": "api-gateway",
            "team": "platform",
            "tier": "1",
            "depends_on": ["user-service"],
            "labels": {"runtime": "kubernetes"},
        },
        {
            "name": "user-service",
            "team": "identity",
            "tier": "1",
            "depends_on": ["database-postgres"],
            "labels": {},
        },
        {"name": "database-postgres", "team": "data", "tier": "1", "depends_on": [], "labels": {}},
    ]
}

GRAPH_YAML_EXAMPLE: Final = """\
services:
  - name: api-gateway
    team: platform
    tier: "1"
    depends_on: [user-service]
    labels: {runtime: kubernetes}
  - name: user-service
    team: identity
    tier: "1"
    depends_on: [database-postgres]
  - name: database-postgres
    team: data
    tier: "1"
"""

ETAG_HEADER: Final = {
    "ETag": {
        "description": "The graph's digest in quotes; send it back in If-Match to replace "
        "exactly this version.",
        "schema": {"type": "string"},
    }
}


class GraphService(BaseModel):
    """One service of the graph."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique service name, as alerts carry it in their labels.")
    team: str | None = Field(default=None, description="The owning team.")
    tier: str | int | None = Field(default=None, description='Criticality, e.g. "1".')
    depends_on: list[str] = Field(
        default_factory=list,
        description="Services this one calls; each must be in the graph. Cycles are allowed.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Free-form string labels of the service."
    )


class GraphDocument(BaseModel):
    """The whole service dependency graph: PUT takes it, GET returns it (sorted)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": GRAPH_EXAMPLE})

    services: list[GraphService] = Field(
        description="Every service; an empty list is refused unless ?allow_empty=true."
    )


class ChangedNames(BaseModel):
    """How many services one kind of change touched, and the first of their names."""

    count: int = Field(description="How many services.")
    names: list[str] = Field(description="The first ten names, sorted.")


class GraphChanges(BaseModel):
    """What a replacement changed, compared with the graph it replaced."""

    added: ChangedNames = Field(description="Services that are new.")
    removed: ChangedNames = Field(description="Services that are gone.")
    changed: ChangedNames = Field(
        description="Services whose team, tier, labels or dependencies differ."
    )


class GraphReplaced(BaseModel):
    """The answer to a graph replacement."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "services": 3,
                "digest": "5d41402abc4b2a76b9719d911017c592" * 2,
                "previous_digest": "7d793037a0760186574b0282f2f435e7" * 2,
                "cycles": [],
                "changes": {
                    "added": {"count": 1, "names": ["database-postgres"]},
                    "removed": {"count": 0, "names": []},
                    "changed": {"count": 1, "names": ["user-service"]},
                },
            }
        }
    )

    services: int = Field(description="How many services the new graph holds.")
    digest: str = Field(description="sha256 of the new canonical graph; also the ETag.")
    previous_digest: str = Field(description="Digest of the graph that was replaced.")
    cycles: list[list[str]] = Field(
        description="Up to 20 dependency cycles, [a, b] meaning a -> b -> a."
    )
    changes: GraphChanges = Field(description="Services added, removed and changed.")


class OpenIncident(BaseModel):
    """An open incident that affects the service."""

    id: int = Field(description="The incident's id.")
    severity: str = Field(description="P0 (most severe) to P3.")
    title: str = Field(description="The incident's title.")
    opened_at: datetime = Field(description="When it opened (UTC).")


class MaintenanceWindow(BaseModel):
    """A maintenance window of the service that has not ended."""

    id: str = Field(description="The silence's id.")
    starts_at: datetime = Field(description="When it starts muting (UTC).")
    ends_at: datetime = Field(description="When it stops muting (UTC).")
    comment: str = Field(description="Why it exists.")


class ServiceView(BaseModel):
    """One service with its neighbours, its blast radius and what is open on it."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "user-service",
                "team": "identity",
                "tier": "1",
                "labels": {},
                "dependencies": ["database-postgres"],
                "dependents": ["api-gateway"],
                "blast_radius": ["api-gateway"],
                "open_incidents": [
                    {
                        "id": 42,
                        "severity": "P1",
                        "title": "HighLatency on user-service",
                        "opened_at": "2026-11-23T09:15:00Z",
                    }
                ],
                "maintenance_windows": [],
            }
        }
    )

    name: str = Field(description="The service name.")
    team: str | None = Field(description="The owning team.")
    tier: str | int | None = Field(description='Criticality, e.g. "1".')
    labels: dict[str, str] = Field(description="The service's labels.")
    dependencies: list[str] = Field(description="Services it depends on directly.")
    dependents: list[str] = Field(description="Services that depend on it directly.")
    blast_radius: list[str] = Field(
        description="Every service that depends on it, directly or transitively."
    )
    open_incidents: list[OpenIncident] = Field(description="Open incidents that affect it.")
    maintenance_windows: list[MaintenanceWindow] = Field(
        description="Its maintenance windows that have not ended."
    )


class ProblemEntry(BaseModel):
    """One problem in a request."""

    field: str = Field(description="Where, e.g. services[3].depends_on[0] or document.")
    message: str = Field(description="What is wrong; quoted values are shortened.")
    line: int | None = Field(default=None, description="Line in a YAML body, when known.")
    column: int | None = Field(default=None, description="Column of a syntax error.")


class GraphError(BaseModel):
    """The error body of a 412 on the graph: the shared error body plus the current ETag."""

    error: str = Field(description="A stable code: validation_error, precondition_failed, ...")
    message: str = Field(description="One sentence for people, naming the field.")
    field: str | None = Field(default=None, description="The first field at fault.")
    errors: list[ProblemEntry] | None = Field(
        default=None, description="Every problem (at most 100 listed)."
    )
    error_count: int | None = Field(default=None, description="How many problems in all.")
    etag: str | None = Field(default=None, description="On 412: the current ETag.")


def put_request_body() -> dict[str, Any]:
    """The requestBody of PUT /graph: the same document as JSON or as YAML."""
    schema = {"$ref": "#/components/schemas/GraphDocument"}
    return {
        "requestBody": {
            "required": True,
            "description": "The new graph. YAML when Content-Type names yaml (or the body "
            "does not start with `{`), JSON otherwise.",
            "content": {
                "application/json": {"schema": schema, "example": GRAPH_EXAMPLE},
                "application/yaml": {"schema": schema, "example": GRAPH_YAML_EXAMPLE},
            },
        }
    }


PUT_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "model": GraphReplaced,
        "description": "Stored; in effect everywhere from now on.",
        "headers": ETAG_HEADER,
    },
    400: {"model": ErrorBody, "description": "The body is empty or not UTF-8 text."},
    412: {
        "model": GraphError,
        "description": "If-Match names a graph that has since been replaced; GET it again.",
    },
    413: {"model": ErrorBody, "description": "The body is over http.graph_max_body_bytes."},
    422: {
        "model": ErrorBody,
        "description": "The document is invalid (every problem named, with its line for "
        "YAML), nests aliases or levels beyond the limits, or empties the graph without "
        "?allow_empty=true.",
    },
}

GET_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "model": GraphDocument,
        "description": "The graph, services sorted by name.",
        "headers": ETAG_HEADER,
    },
}

SERVICE_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {"model": ServiceView, "description": "The service."},
    404: {"model": ErrorBody, "description": "No service of that name in the graph."},
}
