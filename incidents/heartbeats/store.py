"""The stored heartbeat definitions (one `config_documents` row) and their state rows.

A replacement is a compare-and-swap on the document's version, and it brings the
`heartbeats` rows in step in the same transaction: a new heartbeat starts waiting with
its clock at the time of definition; one whose interval or grace changed gets a new
deadline; a removed one loses its row (if it was missed, the caller resolves its alert).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from incidents.db import rowcount
from incidents.exceptions import Conflict
from incidents.heartbeats.spec import EMPTY, Definitions, HeartbeatSpec
from incidents.models import CONFIG_DOCUMENTS, HEARTBEATS

log = logging.getLogger(__name__)

KIND: Final = "heartbeats"
WAITING: Final = "waiting"
ALIVE: Final = "alive"
EXPIRED: Final = "expired"
# A writer that loses the swap re-reads and decides again; past this many it gives up.
MAX_ATTEMPTS: Final = 20

_lock = threading.Lock()
# The last document compiled, by its content: any database, any version numbering.
_compiled: tuple[dict[str, Any], Definitions] | None = None


@dataclass(frozen=True)
class Stored:
    """The definitions as stored, with the digest of the config section last applied."""

    version: int
    specs: list[HeartbeatSpec]
    file_digest: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class Replacement:
    """What one replacement changed; `missed` names removed heartbeats that were expired."""

    version: int
    via: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """`added 1 (a), removed 0, changed 1 (b)`."""
        parts = []
        for word, names in (
            ("added", self.added),
            ("removed", self.removed),
            ("changed", self.changed),
        ):
            parts.append(f"{word} {len(names)}" + (f" ({', '.join(names)})" if names else ""))
        return ", ".join(parts)


@dataclass(frozen=True)
class HeartbeatRow:
    """One heartbeat's state as stored."""

    name: str
    state: str
    last_ping_at: datetime | None
    expires_at: datetime | None
    updated_at: datetime


def document_of(specs: Sequence[HeartbeatSpec]) -> list[dict[str, Any]]:
    """The specs as stored and served: what was given, defaults filled in, nulls left out."""
    return [spec.model_dump(mode="json", exclude_none=True) for spec in specs]


def digest_of(specs: Sequence[HeartbeatSpec]) -> str:
    """A digest of a list of definitions, independent of key order."""
    return hashlib.sha256(orjson.dumps(document_of(specs), option=orjson.OPT_SORT_KEYS)).hexdigest()


def _raw(session: Session) -> tuple[int, dict[str, Any], datetime | None]:
    row = session.execute(
        select(
            CONFIG_DOCUMENTS.c.version, CONFIG_DOCUMENTS.c.document, CONFIG_DOCUMENTS.c.updated_at
        ).where(CONFIG_DOCUMENTS.c.kind == KIND)
    ).first()
    if row is None:
        return 0, {"heartbeats": []}, None
    return int(row.version), dict(row.document), row.updated_at


def read(session: Session) -> Stored:
    """The stored definitions (none when nothing was ever stored)."""
    version, document, updated_at = _raw(session)
    specs = [HeartbeatSpec.model_validate(item) for item in document.get("heartbeats", [])]
    return Stored(version, specs, document.get("file_digest"), updated_at)


def definitions(session: Session) -> Definitions:
    """The stored definitions compiled; compiled again only when the document changed."""
    global _compiled
    version, document, _ = _raw(session)
    cached = _compiled
    if cached is not None and cached[0] == document and cached[1].version == version:
        return cached[1]
    items = document.get("heartbeats", [])
    if not items:
        return EMPTY
    compiled = Definitions.of(version, [HeartbeatSpec.model_validate(item) for item in items])
    with _lock:
        _compiled = (document, compiled)
    return compiled


def rows(session: Session) -> dict[str, HeartbeatRow]:
    """Every heartbeat's state row, by name."""
    return {
        r.name: HeartbeatRow(r.name, r.state, r.last_ping_at, r.expires_at, r.updated_at)
        for r in session.execute(
            select(
                HEARTBEATS.c.name,
                HEARTBEATS.c.state,
                HEARTBEATS.c.last_ping_at,
                HEARTBEATS.c.expires_at,
                HEARTBEATS.c.updated_at,
            )
        )
    }


_KEEP: Final = object()


def replace(
    session: Session,
    specs: Sequence[HeartbeatSpec],
    now: datetime,
    *,
    via: str,
    file_digest: object = _KEEP,
) -> Replacement:
    """Store these definitions in the caller's transaction and bring the rows in step.

    `file_digest` records which config section the stored definitions follow; a
    replacement through the API keeps the one recorded before.
    """
    _ensure_row(session, now)
    for _ in range(MAX_ATTEMPTS):
        version, document, _updated = _raw(session)
        previous = [HeartbeatSpec.model_validate(item) for item in document.get("heartbeats", [])]
        digest = document.get("file_digest") if file_digest is _KEEP else file_digest
        new_document: dict[str, Any] = {"heartbeats": document_of(specs)}
        if digest is not None:
            new_document["file_digest"] = digest
        swap = (
            update(CONFIG_DOCUMENTS)
            .where(CONFIG_DOCUMENTS.c.kind == KIND, CONFIG_DOCUMENTS.c.version == version)
            .values(document=new_document, version=version + 1, updated_at=now)
        )
        if rowcount(session.execute(swap)) == 1:
            return _sync(session, previous, list(specs), now, version + 1, via)
    raise Conflict("the heartbeats are being replaced by others; retry", field="heartbeats")


def apply_section(
    session: Session, specs: Sequence[HeartbeatSpec], now: datetime
) -> Replacement | None:
    """Apply the config file's section when it changed since it was last applied.

    An unchanged section leaves alone definitions replaced through the API since.
    """
    digest = digest_of(specs)
    _, document, _ = _raw(session)
    if document.get("file_digest") == digest:
        return None
    return replace(session, specs, now, via="file", file_digest=digest)


def _sync(
    session: Session,
    previous: list[HeartbeatSpec],
    specs: list[HeartbeatSpec],
    now: datetime,
    version: int,
    via: str,
) -> Replacement:
    before = {s.name: s for s in previous}
    stored = rows(session)
    added: list[str] = []
    changed: list[str] = []
    for spec in specs:
        row = stored.get(spec.name)
        old = before.get(spec.name)
        if old is not None and old != spec:
            changed.append(spec.name)
        elif old is None:
            added.append(spec.name)
        if row is None:
            session.execute(
                insert(HEARTBEATS).values(
                    name=spec.name,
                    last_ping_at=None,
                    expires_at=now + spec.period(),
                    state=WAITING,
                    updated_at=now,
                )
            )
        elif old is None or old.period() != spec.period():
            deadline = _deadline(row, spec.period(), now)
            if deadline is not None:
                session.execute(
                    update(HEARTBEATS)
                    .where(HEARTBEATS.c.name == spec.name)
                    .values(expires_at=deadline, updated_at=now)
                )
    names = {s.name for s in specs}
    gone = sorted(set(stored) - names)
    if gone:
        session.execute(delete(HEARTBEATS).where(HEARTBEATS.c.name.in_(gone)))
    return Replacement(
        version=version,
        via=via,
        added=added,
        removed=sorted(set(before) - names),
        changed=changed,
        missed=[n for n in gone if stored[n].state == EXPIRED],
    )


def _deadline(row: HeartbeatRow, period: timedelta, now: datetime) -> datetime | None:
    """The new deadline of a heartbeat whose period changed (None: keep the stored one)."""
    if row.state == ALIVE and row.last_ping_at is not None:
        return row.last_ping_at + period
    if row.state == WAITING:
        return now + period  # never pinged: the clock starts again with the new definition
    return None  # missed: it stays so until a ping


def _ensure_row(session: Session, now: datetime) -> None:
    """Create the document row (empty, version 0) if missing, so every write is a swap."""
    values = {"kind": KIND, "document": {"heartbeats": []}, "version": 0, "updated_at": now}
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    session.execute(module.insert(CONFIG_DOCUMENTS).values(values).on_conflict_do_nothing())


def log_replacement(replacement: Replacement, **context: Any) -> None:
    """One INFO line per replacement that changed something."""
    if not (replacement.added or replacement.removed or replacement.changed):
        return
    log.info(
        "heartbeats replaced via %s: %s",
        replacement.via,
        replacement.describe(),
        extra={
            "via": replacement.via,
            "version": replacement.version,
            "added_names": replacement.added,
            "removed_names": replacement.removed,
            "changed_names": replacement.changed,
            **context,
        },
    )
