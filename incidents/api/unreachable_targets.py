"""Targets that notifications skip: numbers Twilio refused for good, and SMS opt-outs.

`GET /api/v1/unreachable-targets` lists them; `DELETE .../{channel}/{target}` clears one,
so the next incident notifies it again (incidents.notify.unreachable).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from incidents.api.schemas import ErrorBody
from incidents.apikeys.scopes import CONFIG_WRITE, INCIDENTS_READ
from incidents.db import session_scope
from incidents.exceptions import NotFound
from incidents.notify import unreachable

from .deps import check_token, service
from .params import strict_params
from .principal import require

router = APIRouter(
    prefix="/api/v1/unreachable-targets",
    tags=["notifications"],
    dependencies=[Depends(check_token), Depends(strict_params)],
)

Channel = Annotated[
    Literal["sms", "voice"],
    Path(description="The channel the target is unreachable by: `sms` or `voice`."),
]
Target = Annotated[
    str,
    Path(
        min_length=1,
        max_length=512,
        description="The phone number, as E.164 (`+15551234567`).",
        examples=["+15551234567"],
    ),
]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "The target is not marked unreachable."}
}


class UnreachableOut(BaseModel):
    """A target that notifications skip."""

    channel: str = Field(description="sms or voice.")
    target: str = Field(description="The phone number.")
    code: int | None = Field(description="The provider's error code (21610, 21211, 30006, ...).")
    reason: str = Field(description="What the provider said.")
    since: datetime = Field(description="Since when it is skipped (UTC).")
    incident_id: int | None = Field(description="The incident whose notification taught us.")
    opted_out: bool = Field(
        description="An SMS opt-out (STOP, or Twilio's 21610): a START reply clears it."
    )
    detail: str = Field(description="The sentence skipped notifications carry as their error.")


def _out(mark: unreachable.Mark) -> UnreachableOut:
    return UnreachableOut(
        channel=mark.channel,
        target=mark.target,
        code=mark.code,
        reason=mark.reason,
        since=mark.since,
        incident_id=mark.incident_id,
        opted_out=mark.opted_out,
        detail=mark.describe(),
    )


@router.get(
    "",
    response_model=list[UnreachableOut],
    summary="The targets notifications skip",
    dependencies=[require(INCIDENTS_READ)],
)
def list_unreachable(request: Request) -> list[UnreachableOut]:
    """Every marked target and SMS opt-out, oldest first."""
    with session_scope(service(request).sessions) as session:
        return [_out(mark) for mark in unreachable.listing(session)]


@router.delete(
    "/{channel}/{target}",
    status_code=204,
    summary="Notify a target again",
    responses=NOT_FOUND,
    dependencies=[require(CONFIG_WRITE)],
)
def clear_unreachable(channel: Channel, target: Target, request: Request) -> None:
    """Clear the mark, so the next notification to the target is sent. For SMS this also
    clears an opt-out, as a START reply would; Twilio itself still refuses a number that
    replied STOP until it replies START, and that refusal marks it again."""
    with session_scope(service(request).sessions) as session:
        if not unreachable.clear(session, channel, target):
            raise NotFound(
                f"{channel} target {target[:64]!r} is not marked unreachable", field="target"
            )
