"""The escalation policies document in `config_documents` (kind `escalation`).

Replaced whole by `PUT /api/v1/escalation-policies` or by the config file's `escalation:`
section. The file's section is applied at start-up when it differs from what the file
held when last applied (its digest is kept with the document), so policies replaced
through the API stay until the file changes again, as the service graph does.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from incidents.db import utcnow
from incidents.escalation.policy import EscalationDocument
from incidents.exceptions import ValidationFailed
from incidents.models import CONFIG_DOCUMENTS

KIND: Final = "escalation"
_T = CONFIG_DOCUMENTS.c
_lock = threading.Lock()
_cache: dict[str, tuple[tuple[int, datetime], EscalationDocument]] = {}


def read_policies(session: Session) -> EscalationDocument:
    """The stored policies (parsed once per stored version, per process)."""
    row = session.execute(
        select(_T.version, _T.updated_at, _T.document).where(_T.kind == KIND)
    ).one_or_none()
    if row is None:
        return EscalationDocument()
    stamp = (row.version, row.updated_at)
    cached = _cache.get(KIND)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    raw = dict(row.document)
    raw.pop("file_digest", None)
    parsed = EscalationDocument.model_validate(raw)
    with _lock:
        _cache[KIND] = (stamp, parsed)
    return parsed


def check_references(session: Session, document: EscalationDocument) -> None:
    """ValidationFailed naming the path of every user, schedule or team that does not
    exist in the stored users and schedules."""
    from incidents.oncall.lookup import directory

    people = directory(session)
    teams = {s.team for s in people.schedules if s.team}
    problems: list[str] = []
    for path, kind, name in document.references():
        known = (
            people.user_by_name(name) is not None
            if kind == "user"
            else people.schedule(name) is not None
            if kind == "schedule"
            else name in teams
        )
        if not known:
            where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
            where = where.replace(".[", "[")
            what = "no schedule names this team" if kind == "team" else f"no {kind} named so"
            problems.append(f"{where}: {name!r}: {what}")
    if problems:
        raise ValidationFailed("; ".join(problems[:20]), field=problems[0].split(":")[0])


def write_policies(
    session: Session, document: EscalationDocument, *, file_digest: str | None = None
) -> int:
    """Replace the stored policies; return the new version."""
    now = utcnow()
    # As given: GET returns the shape PUT took, with no defaults or nulls added.
    body: dict[str, Any] = document.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    if file_digest is not None:
        body["file_digest"] = file_digest
    current = session.execute(
        select(_T.version).where(_T.kind == KIND).with_for_update()
    ).scalar_one_or_none()
    if current is None:
        session.execute(
            CONFIG_DOCUMENTS.insert().values(kind=KIND, document=body, version=1, updated_at=now)
        )
        return 1
    session.execute(
        update(CONFIG_DOCUMENTS)
        .where(_T.kind == KIND)
        .values(document=body, version=current + 1, updated_at=now)
    )
    return int(current) + 1


def section_digest(document: EscalationDocument) -> str:
    """A digest of the config file's section, to apply it only when it changed."""
    text = json.dumps(document.model_dump(mode="json", exclude_none=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def apply_file_section(session: Session, document: EscalationDocument | None) -> bool:
    """Apply the config file's `escalation:` section if it changed since last applied."""
    if document is None:
        return False
    digest = section_digest(document)
    stored = session.scalar(select(_T.document).where(_T.kind == KIND))
    if stored is not None and dict(stored).get("file_digest") == digest:
        return False
    check_references(session, document)
    write_policies(session, document, file_digest=digest)
    return True


def apply_at_startup(sessions: Any, document: EscalationDocument | None) -> None:
    """Apply the config file's `escalation:` section; a problem is logged and never stops
    the service (alerts must still be taken in while a policy is being fixed)."""
    import logging

    from sqlalchemy.exc import SQLAlchemyError

    from incidents.db import session_scope
    from incidents.exceptions import IncidentsError

    log = logging.getLogger(__name__)
    if document is None:
        return
    try:
        with session_scope(sessions) as session:
            applied = apply_file_section(session, document)
    except SQLAlchemyError:
        log.warning("database unavailable at start-up; the escalation policies were not applied")
        return
    except IncidentsError as exc:
        log.error("the config file's escalation policies were not applied: %s", exc.message)
        return
    if applied:
        log.info("applied %d escalation policies from the config file", len(document.policies))
