"""API keys over HTTP (admin scope): make one (shown once), list them, revoke one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from incidents.apikeys import store
from incidents.apikeys.scopes import ADMIN, SCOPES
from incidents.db import session_scope, utcnow
from incidents.exceptions import ValidationFailed

from .deps import check_token, service
from .params import UtcDateTime, strict_params
from .principal import CurrentPrincipal, require
from .schemas import ErrorBody

router = APIRouter(
    prefix="/api/v1/api-keys",
    tags=["api keys"],
    dependencies=[Depends(check_token), require(ADMIN), Depends(strict_params)],
)

_SCOPE_LIST = ", ".join(f"`{s}`" for s in SCOPES)


class KeyIn(BaseModel):
    """A key to make."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=64, description="Unique among live keys, e.g. `alertmanager`."
    )
    owner: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Who answers for it; recorded as the actor of what the key does.",
    )
    scopes: list[str] = Field(
        min_length=1, max_length=len(SCOPES), description=f"Any of {_SCOPE_LIST}."
    )
    expires_at: UtcDateTime | None = Field(default=None, description="When it stops working.")
    expires_in_days: int | None = Field(
        default=None, ge=1, le=3650, description="Or: it stops working this many days from now."
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyIn:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give expires_at or expires_in_days, not both")
        return self


class KeyOut(BaseModel):
    """A key as listed: never its hash, never the key."""

    id: int = Field(description="The key's id (DELETE takes it).")
    name: str = Field(description="Its name, unique among live keys.")
    owner: str | None = Field(description="Who answers for it; the actor of what it does.")
    scopes: list[str] = Field(description="What it may do.")
    prefix: str = Field(description="The key's public id: the key starts `inc_<prefix>_`.")
    state: Literal["active", "expired", "revoked"] = Field(description="Whether it works now.")
    created_at: datetime = Field(description="When it was made (UTC).")
    created_by: str | None = Field(
        description="Who made it (the actor of the admin key, or cli:<user>)."
    )
    last_used_at: datetime | None = Field(
        description="Last use, to within about a minute (null: never used)."
    )
    expires_at: datetime | None = Field(description="When it stops working (null: never).")
    revoked_at: datetime | None = Field(description="When it was revoked (null: it was not).")


class CreatedKeyOut(KeyOut):
    """A new key, with the key itself: shown this once, it cannot be read again."""

    key: str = Field(description="The key to give the client, as `Authorization: Bearer <key>`.")


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such key."}
}


def key_out(info: store.KeyInfo, now: datetime) -> KeyOut:
    """The listing form of a key."""
    return KeyOut(
        id=info.id,
        name=info.name,
        owner=info.owner,
        scopes=info.scopes,
        prefix=info.prefix,
        state=info.state(now),
        created_at=info.created_at,
        created_by=info.created_by,
        last_used_at=info.last_used_at,
        expires_at=info.expires_at,
        revoked_at=info.revoked_at,
    )


@router.post(
    "",
    response_model=CreatedKeyOut,
    status_code=201,
    summary="Make an API key (the key is in this answer only)",
    responses={409: {"model": ErrorBody, "description": "A live key has this name."}},
)
def create_key(body: KeyIn, request: Request, who: CurrentPrincipal) -> CreatedKeyOut:
    """Make a key with these scopes; unknown scopes are a 422 naming them."""
    now = utcnow()
    expires_at = body.expires_at
    if body.expires_in_days is not None:
        expires_at = now + timedelta(days=body.expires_in_days)
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed("expires_at: must be in the future", field="expires_at")
    state = service(request)
    with session_scope(state.sessions) as session:
        created = store.create_key(
            session,
            name=body.name,
            owner=body.owner,
            scopes=body.scopes,
            expires_at=expires_at,
            created_by=who.actor,
            now=now,
            server_secret=state.settings.auth.secret(),
        )
    listed = key_out(created.info, now)
    return CreatedKeyOut(**listed.model_dump(), key=created.key)


@router.get("", response_model=list[KeyOut], summary="List API keys, newest first")
def list_keys(request: Request) -> list[KeyOut]:
    """Every key ever made, revoked and expired ones too (never hashes or keys)."""
    now = utcnow()
    with service(request).sessions() as session:
        return [key_out(info, now) for info in store.list_keys(session)]


@router.delete(
    "/{key_id}",
    response_model=KeyOut,
    summary="Revoke an API key",
    responses={
        **NOT_FOUND,
        409: {"model": ErrorBody, "description": "The key was revoked already."},
    },
)
def revoke_key(
    key_id: Annotated[int, Path(ge=1, le=2**31 - 1, description="The key's id.")],
    request: Request,
) -> KeyOut:
    """Revoke it: refused at once by this process, and by every other within
    `auth.cache_seconds`."""
    now = utcnow()
    with session_scope(service(request).sessions) as session:
        row = store.key_by_id(session, key_id)
        info = store.revoke_key(session, row, now)
    request.app.state.authenticator.forget(info.id)
    return key_out(info, now)
