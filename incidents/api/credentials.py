"""From an Authorization header to a Principal: the bootstrap token, or an API key.

A key is found by its public id and proven by its digest (incidents.apikeys.tokens). The
answer, good or bad, is cached in the process for `auth.cache_seconds`, keyed by a
SHA-256 of the presented key (never the key), so a sender posting thousands of times a
second costs one database lookup per interval, and a sender stuck on a revoked key does
too. Concurrent first requests with one key share a single lookup. The lookup runs in a
worker thread; the event loop never waits on the database or on scrypt.

Consequence: a revoked key keeps working for up to `auth.cache_seconds` on replicas
other than the one that revoked it. Expiry is exact: it is checked on every request.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from incidents.apikeys import store
from incidents.apikeys.scopes import INCIDENTS_READ
from incidents.apikeys.tokens import key_id_of, verify_key
from incidents.config import Settings
from incidents.db import utcnow
from incidents.exceptions import Unauthorized

from .auth import presented_credential
from .principal import BOOTSTRAP, Principal

log = logging.getLogger("incidents.auth")

INVALID = "invalid credentials"
# Past this many cached answers the cache is emptied rather than grown (a flood of
# made-up keys must not eat memory).
_MAX_CACHED = 10_000

Answer = Principal | str  # a Principal, or why the key was refused


class Authenticator:
    """Resolves presented credentials to Principals, with a short in-process cache."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.token = settings.api_token
        self.secret = settings.auth.secret()
        self.ttl = settings.auth.cache_seconds
        self.sessions = sessions
        self.clock = clock
        self.now = now
        self._cache: dict[bytes, tuple[float, Answer]] = {}
        self._pending: dict[bytes, asyncio.Future[Answer]] = {}

    async def authenticate(self, header: str) -> Principal:
        """The Principal of an Authorization header; Unauthorized when there is none.

        SQLAlchemy errors from the key lookup propagate: the caller answers 503.
        """
        presented, problem = presented_credential(header)
        if problem is not None:
            raise Unauthorized(problem)
        if self.token and hmac.compare_digest(presented.encode(), self.token.encode()):
            return BOOTSTRAP
        key_id = key_id_of(presented)
        if key_id is None:
            raise Unauthorized(INVALID)
        digest = hashlib.sha256(presented.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > self.clock():
            answer = cached[1]
        else:
            answer = await self._shared_lookup(digest, key_id, presented)
        if isinstance(answer, str):
            raise Unauthorized(answer)
        if answer.expires_at is not None and answer.expires_at <= self.now():
            raise Unauthorized("this API key has expired")
        return answer

    async def _shared_lookup(self, digest: bytes, key_id: str, presented: str) -> Answer:
        # The lookup is a task of its own: a client that hangs up does not cancel it for
        # the other requests waiting on the same key.
        task = self._pending.get(digest)
        if task is None:
            task = asyncio.ensure_future(run_in_threadpool(self._lookup, key_id, presented))
            self._pending[digest] = task
            task.add_done_callback(functools.partial(self._settle, digest))
        return await asyncio.shield(task)

    def _settle(self, digest: bytes, task: asyncio.Future[Answer]) -> None:
        """Cache a finished lookup's answer (runs before its waiters resume)."""
        self._pending.pop(digest, None)
        if task.cancelled() or task.exception() is not None or self.ttl <= 0:
            return
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[digest] = (self.clock() + self.ttl, task.result())

    def _lookup(self, key_id: str, presented: str) -> Answer:
        """Find and prove the key, and record its use (at most about once a minute)."""
        now = self.now()
        with self.sessions() as session:
            row = store.by_key_id(session, key_id)
            if row is None or not verify_key(presented, row.key_hash, self.secret):
                return INVALID
            assert row.id is not None
            if row.revoked_at is not None:
                return "this API key has been revoked"
            if row.expires_at is not None and row.expires_at <= now:
                return "this API key has expired"
            if row.last_used_at is None or row.last_used_at < now - store.TOUCH_INTERVAL:
                store.touch(session, row.id, now)
                session.commit()
            return Principal(
                name=row.name,
                owner=row.owner,
                scopes=frozenset(row.scopes),
                key_id=row.id,
                expires_at=row.expires_at,
            )

    def forget(self, key_id: int | None = None) -> None:
        """Drop cached answers (of one key, or all): a revocation here applies at once."""
        if key_id is None:
            self._cache.clear()
            return
        for digest, (_, answer) in list(self._cache.items()):
            if isinstance(answer, Principal) and answer.key_id == key_id:
                self._cache.pop(digest, None)


async def may_read(request: Request) -> bool:
    """True when the request carries a key with `incidents:read` (public endpoints use it
    to decide how much to show; any failure to tell is a no)."""
    authenticator: Authenticator | None = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        return False
    try:
        found = await authenticator.authenticate(request.headers.get("authorization", ""))
    except (Unauthorized, SQLAlchemyError):
        return False
    return found.allows(INCIDENTS_READ)


def startup_warnings(settings: Settings) -> None:
    """Say at start-up what the settings mean for authentication, where it matters."""
    if not settings.api_token:
        log.info("no INCIDENTS_API_TOKEN: only API keys are accepted (incidents apikey create)")
        return
    production = settings.database_url.startswith("postgres") or bool(settings.broker_url)
    if production:
        log.warning(
            "INCIDENTS_API_TOKEN is set: it is a bootstrap key with every scope. Make API "
            "keys with the scopes each client needs (incidents apikey create), then unset it"
        )
