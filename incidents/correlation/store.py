"""The stored service graph, and a per-process cache that follows its digest.

Every replica and worker checks the digest (one indexed read) before it correlates, so
a PUT of the graph takes effect everywhere without a restart.

Every write is a compare-and-swap on the digest (`UPDATE ... WHERE digest = <read>`), so
the check of an If-Match, or of the graph file's last applied digest, and the write are
one atomic step: of two writers that read the same version, exactly one wins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from incidents.correlation.graph import ServiceGraph
from incidents.correlation.graph_document import describe_changes, summarize_changes
from incidents.db import utcnow
from incidents.exceptions import PreconditionFailed, ValidationFailed
from incidents.locks import lock_graph
from incidents.models import GRAPH_DOCS

log = logging.getLogger(__name__)

EMPTY_DIGEST: Final = ServiceGraph.empty().digest
# A writer that loses the swap re-reads and decides again; past this many it gives up.
MAX_ATTEMPTS: Final = 20

_lock = threading.Lock()
_cached: tuple[str, ServiceGraph] | None = None


@dataclass(frozen=True)
class Replacement:
    """One replacement of the stored graph: who made it, and what changed."""

    digest: str
    previous_digest: str
    services: int
    by: str | None
    via: str
    changes: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """The change for people: `added 2 (a, b), removed 0, changed 1 (c)`."""
        return describe_changes(self.changes)


def current_graph(session: Session) -> ServiceGraph:
    """The graph as stored now (an empty graph when none was ever saved)."""
    global _cached
    digest = session.scalar(select(GRAPH_DOCS.c.digest).where(GRAPH_DOCS.c.id == 1))
    if digest is None:
        return ServiceGraph.empty()
    cached = _cached
    if cached is not None and cached[0] == digest:
        return cached[1]
    row = session.execute(
        select(GRAPH_DOCS.c.digest, GRAPH_DOCS.c.document).where(GRAPH_DOCS.c.id == 1)
    ).one()
    graph = ServiceGraph.from_document(row.document)
    with _lock:
        _cached = (row.digest, graph)
    return graph


def replace_graph(
    session: Session,
    graph: ServiceGraph,
    *,
    by: str | None,
    via: str = "api",
    if_match: Collection[str] | None = None,
    allow_empty: bool = False,
) -> Replacement:
    """Store the graph in the caller's transaction; If-Match tags must name the current one.

    `if_match` holds the entity tags of an If-Match header without their quotes ("*" for
    any); None means no precondition. An empty graph is refused unless allow_empty.
    """
    if len(graph) == 0 and not allow_empty:
        raise ValidationFailed(
            "services: the list is empty, which would remove every service from the graph; "
            "to empty it on purpose, add ?allow_empty=true (or --allow-empty)",
            field="services",
        )
    # Correlation jobs lock partitions of the graph they read: none may run while it changes.
    lock_graph(session, exclusive=True)
    _ensure_row(session)
    document = graph.to_document()
    for _ in range(MAX_ATTEMPTS):
        row = session.execute(
            select(GRAPH_DOCS.c.digest, GRAPH_DOCS.c.document).where(GRAPH_DOCS.c.id == 1)
        ).one()
        if if_match is not None and "*" not in if_match and row.digest not in if_match:
            raise PreconditionFailed(
                "the service graph changed since you read it (If-Match does not name the "
                "current ETag); GET it again and re-apply your change",
                field="If-Match",
                etag=f'"{row.digest}"',
            )
        swap = (
            update(GRAPH_DOCS)
            .where(GRAPH_DOCS.c.id == 1, GRAPH_DOCS.c.digest == row.digest)
            .values(document=document, digest=graph.digest, updated_at=utcnow(), updated_by=by)
        )
        if _swapped(session, swap):
            return Replacement(
                digest=graph.digest,
                previous_digest=row.digest,
                services=len(graph),
                by=by,
                via=via,
                changes=summarize_changes(row.document, document),
            )
    raise PreconditionFailed("the service graph is being replaced by others; retry", field="graph")


def save_graph(session: Session, graph: ServiceGraph, *, by: str | None = None) -> Replacement:
    """Store the graph unconditionally (empty allowed) in the caller's transaction."""
    return replace_graph(session, graph, by=by, via="code", allow_empty=True)


def apply_graph_file(session: Session, path: str) -> Replacement | None:
    """Apply the graph file when its graph changed since it was last applied; else None.

    An unchanged file leaves alone a graph that was replaced through the API since. Two
    replicas starting together both read, but only one swap succeeds; the other re-reads,
    finds the file applied, and does nothing.
    """
    graph = ServiceGraph.from_file(path)
    _ensure_row(session)
    document = graph.to_document()
    by = f"file:{path}"
    for _ in range(MAX_ATTEMPTS):
        row = session.execute(
            select(
                GRAPH_DOCS.c.digest,
                GRAPH_DOCS.c.document,
                GRAPH_DOCS.c.file_digest,
                GRAPH_DOCS.c.updated_by,
            ).where(GRAPH_DOCS.c.id == 1)
        ).one()
        last_applied = row.file_digest
        adopt = False
        if last_applied is None and (row.updated_by or "").startswith("file:"):
            # Stored before file digests were kept: the stored graph is what the file held.
            last_applied = row.digest
        elif last_applied is None and row.digest != EMPTY_DIGEST:
            # Replaced through the API before file digests were kept: whether the file
            # changed since is unknown, so keep the stored graph and remember the file.
            adopt = True
        if last_applied == graph.digest and row.file_digest == graph.digest:
            return None
        swap = update(GRAPH_DOCS).where(
            GRAPH_DOCS.c.id == 1,
            GRAPH_DOCS.c.digest == row.digest,
            GRAPH_DOCS.c.file_digest.is_not_distinct_from(row.file_digest),
        )
        if adopt or last_applied == graph.digest or row.digest == graph.digest:
            # Nothing to apply: only remember which file content the stored graph follows.
            if _swapped(session, swap.values(file_digest=graph.digest)):
                if adopt and row.digest != graph.digest:
                    log.warning(
                        "correlation.graph_file differs from the stored service graph, which "
                        "was replaced through the API; keeping the stored graph. Edit the file "
                        "or run `incidents graph load` to apply it",
                        extra={"graph_file": path},
                    )
                return None
            continue
        values = {
            "document": document,
            "digest": graph.digest,
            "file_digest": graph.digest,
            "updated_at": utcnow(),
            "updated_by": by,
        }
        if _swapped(session, swap.values(**values)):
            return Replacement(
                digest=graph.digest,
                previous_digest=row.digest,
                services=len(graph),
                by=by,
                via="file",
                changes=summarize_changes(row.document, document),
            )
    raise PreconditionFailed("the service graph is being replaced by others; retry", field="graph")


def log_replacement(replacement: Replacement, **context: Any) -> None:
    """One INFO line per replacement, with who made it and what changed, as fields."""
    changes = replacement.changes
    fields: dict[str, Any] = {
        "by": replacement.by,
        "via": replacement.via,
        "digest": replacement.digest,
        "previous_digest": replacement.previous_digest,
        "services": replacement.services,
        **context,
    }
    for kind in ("added", "removed", "changed"):
        fields[kind] = changes[kind]["count"]
        fields[f"{kind}_names"] = changes[kind]["names"]
    log.info(
        "service graph replaced via %s by %s: %s",
        replacement.via,
        replacement.by,
        replacement.describe(),
        extra=fields,
    )


def _ensure_row(session: Session) -> None:
    """Create the one graph row (empty) if it is missing, so every write is a swap."""
    dialect = session.get_bind().dialect.name
    values = {"id": 1, "document": {"services": []}, "digest": EMPTY_DIGEST, "updated_at": utcnow()}
    if dialect == "postgresql":
        session.execute(postgresql.insert(GRAPH_DOCS).values(values).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(GRAPH_DOCS).values(values).on_conflict_do_nothing())


def _swapped(session: Session, statement: Any) -> bool:
    result = cast(CursorResult[Any], session.execute(statement))
    return result.rowcount == 1
