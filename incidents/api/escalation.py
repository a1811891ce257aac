"""Escalation policies: `GET` and `PUT /api/v1/escalation-policies`, the same document as
the config file's `escalation:` section."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from incidents.api.schemas import ErrorBody
from incidents.apikeys.scopes import CONFIG_WRITE, INCIDENTS_READ
from incidents.db import session_scope
from incidents.escalation.policy import EscalationDocument
from incidents.escalation.store import check_references, read_policies, write_policies

from .deps import check_token, service
from .params import strict_params
from .principal import require

router = APIRouter(
    prefix="/api/v1/escalation-policies",
    tags=["escalation"],
    dependencies=[Depends(check_token), Depends(strict_params)],
)

PUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorBody,
        "description": "The document is invalid, or names a user, schedule or team that "
        "does not exist; `field` and the message name the path.",
    }
}


@router.get(
    "",
    response_model=EscalationDocument,
    response_model_exclude_unset=True,
    response_model_exclude_none=True,
    summary="The escalation policies",
    dependencies=[require(INCIDENTS_READ)],
)
def get_policies(request: Request) -> EscalationDocument:
    """Every policy, as stored: the document PUT took, keys it left out left out."""
    with session_scope(service(request).sessions) as session:
        return read_policies(session)


@router.put(
    "",
    response_model=EscalationDocument,
    response_model_exclude_unset=True,
    response_model_exclude_none=True,
    summary="Replace the escalation policies",
    responses=PUT_RESPONSES,
    dependencies=[require(CONFIG_WRITE)],
)
def put_policies(
    request: Request, body: Annotated[EscalationDocument, Body()]
) -> EscalationDocument:
    """Replace the whole document. Incidents escalating already keep the copy of their
    policy they started with; new pages use the new policies."""
    with session_scope(service(request).sessions) as session:
        check_references(session, body)
        write_policies(session, body)
    return body
