"""The postmortem of an incident as Markdown, JSON or HTML, and the JSON's schema."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from incidents.apikeys.scopes import INCIDENTS_READ
from incidents.exceptions import ValidationFailed
from incidents.postmortem.html import render_html
from incidents.postmortem.markdown import render_markdown
from incidents.postmortem.schema import (
    POSTMORTEM_SCHEMA,
    SCHEMA_PATH,
    openapi_schema,
    postmortem_json,
)
from incidents.postmortem.view import build_postmortem

from .deps import check_token, db_session
from .params import IncidentId, strict_params
from .principal import require
from .responses import JsonResponse

router = APIRouter(
    tags=["incidents"],
    dependencies=[Depends(check_token), require(INCIDENTS_READ), Depends(strict_params)],
)

FORMATS: Final = ("md", "json", "html")
MEDIA_TYPES: Final = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "json": "application/json",
}

_MD_EXAMPLE = (
    "# Postmortem: incident 7: PostgresDown on database-postgres\n\n"
    "| Severity | Status | State | Duration |\n|---|---|---|---|\n"
    "| P1 | resolved | resolved | 12 min 5 s |\n\n## Times\n..."
)
_JSON_EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "incident": {"id": 7, "title": "PostgresDown on database-postgres", "severity": "P1"},
    "times": {"detected_at": "2026-12-06T10:00:00Z", "time_to_acknowledge_seconds": 95.0},
    "timeline": [
        {
            "at": "2026-12-06T10:00:00Z",
            "kind": "alert_fired",
            "actor": "alertmanager",
            "message": "alert PostgresDown fired on database-postgres (P1)",
            "source": "alert",
            "data": {"fingerprint": "a1b2c3", "service": "database-postgres"},
        }
    ],
}

POSTMORTEM_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The postmortem in the asked format. JSON follows the schema served at "
        f"`{SCHEMA_PATH}` (`schema_version` 1).",
        "content": {
            "text/markdown": {
                "schema": {"type": "string"},
                "example": _MD_EXAMPLE,
            },
            "text/html": {
                "schema": {"type": "string"},
                "example": '<!DOCTYPE html><html lang="en">...</html>',
            },
            "application/json": {"schema": openapi_schema(), "example": _JSON_EXAMPLE},
        },
    },
}


@router.get(
    "/api/v1/incidents/{incident_id}/postmortem",
    summary="The incident's postmortem (Markdown, JSON or HTML)",
    response_class=Response,
    responses=POSTMORTEM_RESPONSES,
)
def get_postmortem(
    incident_id: IncidentId,
    session: Annotated[Session, Depends(db_session)],
    format: Annotated[
        str,
        Query(
            description="`md` (Markdown with a Mermaid graph, the default), `json` (versioned "
            "schema) or `html` (one self-contained printable page with an SVG graph).",
            json_schema_extra={"enum": list(FORMATS)},
            max_length=16,
        ),
    ] = "md",
) -> Response:
    """Times, causes, the dependency picture, the full timeline and sections to write."""
    if format not in FORMATS:
        raise ValidationFailed(
            f"format: unknown format {format[:16]!r}; use one of {', '.join(FORMATS)}",
            field="format",
        )
    pm = build_postmortem(session, incident_id)
    if format == "json":
        return JsonResponse(postmortem_json(pm))
    text = render_markdown(pm) if format == "md" else render_html(pm)
    return Response(text.encode("utf-8"), media_type=MEDIA_TYPES[format])


@router.get(
    SCHEMA_PATH,
    summary="The JSON Schema of the postmortem's JSON",
    response_class=JsonResponse,
    responses={
        200: {
            "description": "A JSON Schema (draft 2020-12) document.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
def get_postmortem_schema() -> JsonResponse:
    """What `format=json` returns, as a JSON Schema; versioned by `schema_version`."""
    return JsonResponse(POSTMORTEM_SCHEMA)
