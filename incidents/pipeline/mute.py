"""Muting: silences, maintenance windows and inhibition. Muted alerts are kept, not dropped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents.config import InhibitRule
from incidents.models import Alert, AlertState, Silence
from incidents.routing.matchers import Matcher, matches_all, parse_matchers

SILENCES = Silence.__table__  # type: ignore[attr-defined]
ALERTS = Alert.__table__  # type: ignore[attr-defined]
STATES = AlertState.__table__  # type: ignore[attr-defined]


def match_labels(alert: Alert) -> dict[str, str]:
    """The labels matchers see: the alert's own plus its derived severity and service."""
    labels = dict(alert.labels)
    labels["__severity__"] = alert.severity
    labels["__service__"] = alert.service or ""
    return labels


@dataclass(frozen=True)
class ActiveSilence:
    """A silence or maintenance window in force now."""

    id: str
    matchers: tuple[Matcher, ...]
    service: str | None

    def covers(self, alert: Alert, labels: Mapping[str, str]) -> bool:
        """True when this silence mutes the alert."""
        if self.service is not None and alert.service != self.service:
            return False
        return matches_all(list(self.matchers), labels)


def active_silences(session: Session, now: datetime) -> list[ActiveSilence]:
    """Silences and maintenance windows whose time range includes now."""
    rows = session.execute(
        select(SILENCES.c.id, SILENCES.c.matchers, SILENCES.c.service)
        .where(SILENCES.c.starts_at <= now)
        .where(SILENCES.c.ends_at > now)
    )
    out = []
    for silence_id, matchers, service in rows:
        parsed: list[Matcher] = []
        for text in matchers:
            parsed.extend(parse_matchers(text))
        out.append(ActiveSilence(silence_id, tuple(parsed), service))
    return out


class Inhibitor:
    """Applies the configured inhibition rules against the alerts firing now."""

    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self._rules = [
            (
                [m for text in r.source_matchers for m in parse_matchers(text)],
                [m for text in r.target_matchers for m in parse_matchers(text)],
                list(r.equal),
            )
            for r in rules
        ]

    def inhibitors(self, session: Session, alert: Alert, labels: Mapping[str, str]) -> list[str]:
        """Fingerprints of firing, unmuted alerts that inhibit this one."""
        found: list[str] = []
        for source, target, equal in self._rules:
            if not matches_all(target, labels):
                continue
            query = (
                select(Alert)
                .outerjoin(STATES, STATES.c.fingerprint == ALERTS.c.fingerprint)
                .where(ALERTS.c.status == "firing")
                .where(ALERTS.c.fingerprint != alert.fingerprint)
                # A source that is itself muted inhibits nothing (as in Alertmanager).
                .where(
                    (STATES.c.fingerprint.is_(None))
                    | ((STATES.c.silenced_by == []) & (STATES.c.inhibited_by == []))
                )
            )
            if "__service__" in equal:
                query = query.where(ALERTS.c.service == alert.service)
            for candidate in session.scalars(query.limit(1000)):
                candidate_labels = match_labels(candidate)
                if not matches_all(source, candidate_labels):
                    continue
                if all(candidate_labels.get(k, "") == labels.get(k, "") for k in equal):
                    found.append(candidate.fingerprint)
        return sorted(set(found))
