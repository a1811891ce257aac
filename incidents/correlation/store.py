"""The stored service graph, and a per-process cache that follows its digest.

Every replica and worker checks the digest (one indexed read) before it correlates, so
a PUT of the graph takes effect everywhere without a restart.
"""

from __future__ import annotations

import threading

from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents.correlation.graph import ServiceGraph
from incidents.db import utcnow
from incidents.models import GRAPH_DOCS, ServiceGraphDoc

_lock = threading.Lock()
_cached: tuple[str, ServiceGraph] | None = None


def current_graph(session: Session) -> ServiceGraph:
    """The graph as stored now (an empty graph when none was ever saved)."""
    global _cached
    digest = session.scalar(select(GRAPH_DOCS.c.digest).where(GRAPH_DOCS.c.id == 1))
    if digest is None:
        return ServiceGraph.empty()
    cached = _cached
    if cached is not None and cached[0] == digest:
        return cached[1]
    row = session.get(ServiceGraphDoc, 1)
    assert row is not None
    graph = ServiceGraph.from_document(row.document)
    with _lock:
        _cached = (row.digest, graph)
    return graph


def save_graph(session: Session, graph: ServiceGraph, *, by: str | None = None) -> ServiceGraphDoc:
    """Store the graph (replacing the previous one) in the caller's transaction."""
    row = session.get(ServiceGraphDoc, 1)
    if row is None:
        row = ServiceGraphDoc(id=1, document={}, digest="", updated_at=utcnow())
        session.add(row)
    row.document = graph.to_document()
    row.digest = graph.digest
    row.updated_at = utcnow()
    row.updated_by = by
    return row


def seed_graph_from_file(session: Session, path: str) -> bool:
    """Load the configured graph file when the database holds no graph yet."""
    if session.get(ServiceGraphDoc, 1) is not None:
        return False
    graph = ServiceGraph.from_file(path)
    save_graph(session, graph, by=f"file:{path}")
    return True
