"""The service dependency graph: read it, replace it, and look at one service."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from incidents.api.queries import services as queries
from incidents.apikeys.scopes import CONFIG_WRITE, INCIDENTS_READ
from incidents.correlation.graph import ServiceGraph
from incidents.correlation.store import (
    Replacement,
    current_graph,
    log_replacement,
    replace_graph,
)
from incidents.db import session_scope, utcnow
from incidents.exceptions import BadRequest, NotFound

from .deps import check_token, db_session, read_body, service
from .graph_schemas import GET_RESPONSES, PUT_RESPONSES, SERVICE_RESPONSES, put_request_body
from .principal import current, require
from .responses import JsonResponse

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/v1/services", tags=["services"], dependencies=[Depends(check_token)]
)


@router.get(
    "/graph",
    summary="The service dependency graph",
    responses=GET_RESPONSES,
    dependencies=[require(INCIDENTS_READ)],
)
def get_graph(session: Annotated[Session, Depends(db_session)]) -> JsonResponse:
    """`{"services": [...]}`, the shape PUT takes; the ETag header carries its digest."""
    graph = current_graph(session)
    return JsonResponse(graph.to_document(), headers={"ETag": f'"{graph.digest}"'})


@router.put(
    "/graph",
    summary="Replace the service dependency graph (JSON or YAML)",
    responses=PUT_RESPONSES,
    openapi_extra=put_request_body(),
    dependencies=[require(CONFIG_WRITE)],
)
async def put_graph(
    request: Request,
    allow_empty: Annotated[
        bool,
        Query(description="Set to true to store a graph with no services (empties the graph)."),
    ] = False,
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='The ETag from GET (e.g. "5d41..."), or *: the graph is replaced only '
            "if it is still that version; otherwise 412.",
        ),
    ] = None,
) -> JsonResponse:
    """Validate and store a new graph; every replica and worker uses it from now on."""
    body = await read_body(request)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8 text", field="body") from None
    if not text.strip():
        raise BadRequest("body is empty; expected a graph document", field="body")
    content_type = request.headers.get("content-type", "")
    as_yaml = "yaml" in content_type or (
        "json" not in content_type and not text.lstrip().startswith("{")
    )
    state = service(request)
    client = request.client.host if request.client else None
    by = current(request).actor
    tags = parse_if_match(if_match)

    def parse_and_store() -> tuple[ServiceGraph, Replacement]:
        # A large graph takes a second or two to parse: not on the event loop.
        parsed = (
            ServiceGraph.from_yaml(text, source="body")
            if as_yaml
            else ServiceGraph.from_json(text, source="body")
        )
        with session_scope(state.sessions) as session:
            replacement = replace_graph(
                session, parsed, by=by, via="api", if_match=tags, allow_empty=allow_empty
            )
        log_replacement(replacement, client=client)
        return parsed, replacement

    graph, replacement = await run_in_threadpool(parse_and_store)
    return JsonResponse(
        {
            "services": len(graph),
            "digest": graph.digest,
            "previous_digest": replacement.previous_digest,
            "cycles": graph.cycles(),
            "changes": replacement.changes,
        },
        headers={"ETag": f'"{graph.digest}"'},
    )


def parse_if_match(header: str | None) -> list[str] | None:
    """The entity tags of an If-Match header, unquoted; weak tags never match (RFC 9110)."""
    if header is None:
        return None
    tags = []
    for part in header.split(","):
        tag = part.strip()
        if tag == "*":
            tags.append(tag)
        elif tag and not tag.startswith("W/"):
            tags.append(tag.strip('"'))
    return tags


@router.get(
    "/{name}",
    summary="One service: dependencies, dependents and open incidents",
    responses=SERVICE_RESPONSES,
    dependencies=[require(INCIDENTS_READ)],
)
def get_service(name: str, session: Annotated[Session, Depends(db_session)]) -> JsonResponse:
    """The service's attributes, its neighbours, its blast radius and what is open on it."""
    graph = current_graph(session)
    if name not in graph:
        raise NotFound(f"no service {name!r} in the graph", field="name")
    open_incidents = queries.open_incidents(session, service=name)
    windows = queries.maintenance_windows(session, service=name, now=utcnow())
    return JsonResponse(
        {
            "name": name,
            **graph.node(name),
            "dependencies": graph.dependencies(name),
            "dependents": graph.dependents(name),
            "blast_radius": graph.blast_radius(name),
            "open_incidents": [
                {"id": i, "severity": s, "title": t, "opened_at": o}
                for i, s, t, o in open_incidents
            ],
            "maintenance_windows": [
                {"id": i, "starts_at": s, "ends_at": e, "comment": c} for i, s, e, c in windows
            ],
        }
    )
