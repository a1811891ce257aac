"""Secret calendar-feed links (see incidents.oncall.feed_links): one endpoint, with a key,
that hands out a schedule's link, and the feed itself, opened by the link's token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from incidents.apikeys.scopes import INCIDENTS_READ
from incidents.exceptions import Conflict, Forbidden
from incidents.oncall.feed_links import FEED_PREFIX, feed_path, feed_secret, token_opens
from incidents.oncall.lookup import directory

from .deps import check_token, db_session, service
from .oncall_schemas import NOT_FOUND
from .params import strict_params
from .principal import require
from .schedules import calendar_response

links = APIRouter(
    prefix="/api/v1/schedules",
    tags=["schedules"],
    dependencies=[Depends(check_token), Depends(strict_params)],
)
feeds = APIRouter(prefix=FEED_PREFIX, tags=["schedules"])

Name = Annotated[str, Path(description="The schedule's name.", max_length=64)]


class FeedLink(BaseModel):
    """Where a calendar app subscribes to a schedule's shifts."""

    url: str = Field(description="The link, with its token: treat it as a password")
    path: str = Field(description="The same link without the service's address")


@links.get(
    "/{name}/feed-url",
    response_model=FeedLink,
    summary="A secret link to a schedule's calendar feed, for calendar apps",
    responses={
        **NOT_FOUND,
        409: {"description": "No secret is configured to sign links with"},
    },
    dependencies=[require(INCIDENTS_READ)],
)
def feed_url(
    name: Name, request: Request, session: Annotated[Session, Depends(db_session)]
) -> FeedLink:
    """The link opens this schedule's feed without a key; changing `auth.key_secret` (or
    the bootstrap token it falls back to) revokes every link."""
    settings = service(request).settings
    secret = feed_secret(settings)
    if secret is None:
        raise Conflict(
            "calendar feed links are signed with auth.key_secret (or INCIDENTS_API_TOKEN); "
            "set one of them"
        )
    directory(session).plan(name)  # 404 for a schedule that does not exist
    path = feed_path(secret, name)
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return FeedLink(url=base + path, path=path)


@feeds.get(
    "/{name}.ics",
    summary="A schedule's shifts as an iCalendar feed, opened by a secret link",
    response_class=Response,
    responses={
        200: {
            "description": "text/calendar: the shifts of the past 7 and the next 60 days.",
            "content": {"text/calendar": {"schema": {"type": "string"}}},
        },
        **NOT_FOUND,
    },
)
def subscribed_feed(
    name: Name,
    request: Request,
    session: Annotated[Session, Depends(db_session)],
    token: Annotated[str, Query(max_length=128, description="The link's token")],
) -> Response:
    """What a calendar app fetches from the link `feed-url` gave."""
    secret = feed_secret(service(request).settings)
    if secret is None or not token_opens(secret, name, token):
        raise Forbidden("this link does not open that schedule's feed (was the secret changed?)")
    return calendar_response(session, name)
