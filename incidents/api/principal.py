"""Who is calling: the Principal a key stands for, and the scope each operation needs.

The guard in front of /api/ turns the presented credential into a Principal and puts it
in the request's state; `require(scope)` on a route (or its router) answers 403 when the
Principal lacks the scope. The generated scope test finds each route's scope through
`declared_scopes`, so a route without one fails the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from incidents.apikeys.scopes import ADMIN, allows
from incidents.exceptions import Forbidden, Unauthorized

# Where the guard leaves the Principal in scope["state"].
PRINCIPAL = "principal"
BOOTSTRAP_NAME = "bootstrap-token"


@dataclass(frozen=True)
class Principal:
    """The caller: a key's name, owner and scopes (key_id None: the bootstrap token)."""

    name: str
    owner: str | None
    scopes: frozenset[str]
    key_id: int | None
    expires_at: datetime | None = field(default=None, compare=False)

    @property
    def actor(self) -> str:
        """Who the timeline and records name: the owner, else `key:<name>`."""
        if self.key_id is None:
            return self.name
        return self.owner or f"key:{self.name}"

    @property
    def is_admin(self) -> bool:
        """True for an admin key (and the bootstrap token)."""
        return ADMIN in self.scopes

    def allows(self, scope: str) -> bool:
        """True when this caller may use an operation that needs `scope`."""
        return allows(self.scopes, scope)

    def acting_as(self, claimed: str | None) -> str:
        """The actor to record: an admin may name someone else (a bot acting for a
        person); any other key is recorded as itself, whatever the request claims."""
        if claimed and self.is_admin:
            return claimed
        return self.actor


BOOTSTRAP = Principal(BOOTSTRAP_NAME, None, frozenset({ADMIN}), None)


async def authenticated(request: Request) -> Principal:
    """The request's Principal: the guard's, or checked here when the guard did not run."""
    state = request.scope.setdefault("state", {})
    found = state.get(PRINCIPAL)
    if isinstance(found, Principal):
        return found
    authenticator = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        raise Unauthorized("no authenticator is installed")
    principal_: Principal = await authenticator.authenticate(
        request.headers.get("authorization", "")
    )
    state[PRINCIPAL] = principal_
    return principal_


def current(request: Request) -> Principal:
    """The Principal a dependency (`require`, `check_token`) has already established."""
    found = request.scope.get("state", {}).get(PRINCIPAL)
    if not isinstance(found, Principal):
        raise Unauthorized("the request was not authenticated")
    return found


async def principal(request: Request) -> Principal:
    """Dependency: the calling Principal (its `actor` is who records name)."""
    return await authenticated(request)


CurrentPrincipal = Annotated[Principal, Depends(principal)]


def forbidden(scope: str) -> Forbidden:
    """The 403 for a key without `scope`."""
    return Forbidden(f"this key lacks the scope {scope}", scope=scope)


async def demand(request: Request, scope: str) -> Principal:
    """The Principal, if it has `scope`; else Forbidden (inline form of `require`)."""
    found = await authenticated(request)
    if not found.allows(scope):
        raise forbidden(scope)
    return found


class ScopeCheck:
    """The dependency `require` builds: its `scope` is what the scope test reads."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> None:
        await demand(request, self.scope)

    def __repr__(self) -> str:
        return f"require({self.scope!r})"


def require(scope: str) -> DependsParam:
    """The dependency for `dependencies=[...]`: 403 unless the key has `scope`."""
    dependency: DependsParam = Depends(ScopeCheck(scope))
    return dependency


F = TypeVar("F", bound=Callable[..., Any])

# Endpoints that check their scope inline with `demand` (the ingest hot path, where
# dependency resolution costs), by endpoint function.
INLINE_SCOPES: dict[Callable[..., Any], str] = {}


def declares(scope: str) -> Callable[[F], F]:
    """Mark an endpoint that calls `demand(request, scope)` itself."""

    def mark(endpoint: F) -> F:
        INLINE_SCOPES[endpoint] = scope
        return endpoint

    return mark


def declared_scopes(route: Any) -> list[str]:
    """The scopes a route declares: `require` dependencies, and an inline declaration."""
    found = [
        dep.dependency.scope
        for dep in getattr(route, "dependencies", None) or []
        if isinstance(getattr(dep, "dependency", None), ScopeCheck)
    ]
    endpoint = getattr(route, "endpoint", None)
    if endpoint in INLINE_SCOPES:
        found.append(INLINE_SCOPES[endpoint])
    return found
