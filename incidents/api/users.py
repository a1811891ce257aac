"""The users document: who can be on call, and how to reach them."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends
from sqlalchemy.orm import Session

from incidents.apikeys.scopes import CONFIG_WRITE, INCIDENTS_READ
from incidents.oncall.documents import UsersDocument
from incidents.oncall.store import dump, read_users, replace_users

from .deps import check_token, db_session
from .oncall_schemas import INVALID_DOCUMENT
from .params import strict_params
from .principal import require
from .responses import JsonResponse
from .schemas import ErrorBody

router = APIRouter(
    prefix="/api/v1/users",
    tags=["users"],
    dependencies=[Depends(check_token), Depends(strict_params)],
)

USERS_EXAMPLE: Final[dict[str, Any]] = {
    "users": [
        {
            "name": "alice",
            "email": "alice@example.com",
            "phone": "+15005550006",
            "slack_user_id": "U0ALICE01",
            "time_zone": "Europe/Berlin",
            "team": "database",
            "notification_rules": [
                {"channel": "slack", "after": "0m"},
                {"channel": "sms", "after": "1m"},
                {"channel": "voice", "after": "5m"},
            ],
        }
    ]
}


@router.get(
    "",
    summary="The users document",
    responses={200: {"model": UsersDocument, "description": "Every user, as PUT stored them."}},
    dependencies=[require(INCIDENTS_READ)],
)
def get_users(session: Annotated[Session, Depends(db_session)]) -> JsonResponse:
    """`{"users": [...]}`, the shape PUT takes (unset fields left out)."""
    return JsonResponse(dump(read_users(session)))


@router.put(
    "",
    summary="Replace the users document",
    responses={
        200: {"model": UsersDocument, "description": "Stored."},
        409: {
            "model": ErrorBody,
            "description": "The document leaves out users that schedules still name; the "
            "message names them and the schedules.",
        },
        **INVALID_DOCUMENT,
    },
    dependencies=[require(CONFIG_WRITE)],
)
def put_users(
    document: Annotated[UsersDocument, Body(examples=[USERS_EXAMPLE])],
    session: Annotated[Session, Depends(db_session)],
) -> JsonResponse:
    """Replace every user. Phones are E.164, time zones IANA names, names unique; a user
    that a schedule still names cannot be left out (409)."""
    stored = replace_users(session, document)
    session.commit()
    return JsonResponse(dump(stored))
