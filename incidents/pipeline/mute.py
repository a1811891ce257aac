"""Muting: silences, maintenance windows and inhibition. Muted alerts are kept, not dropped."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents.config import InhibitRule
from incidents.exceptions import ValidationFailed
from incidents.models import ALERTS, SILENCES, STATES, Alert
from incidents.routing.matchers import Matcher, Op, matches_all, parse_matchers
from incidents.vocab import AlertStatus

log = logging.getLogger(__name__)


class MuteState(Protocol):
    """The part of an alert's pipeline state that records what mutes it."""

    silenced_by: list[str]
    inhibited_by: list[str]


def takes_no_part(alert: Alert, state: MuteState) -> bool:
    """True for an ignored alert (Watchdog, `severity: none`): it stays stored and shown,
    but joins no incident, so nothing mutes it; a mute recorded before is cleared."""
    if alert.ignored_by is None:
        return False
    if state.silenced_by:
        state.silenced_by = []
    if state.inhibited_by:
        state.inhibited_by = []
    return True


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
        try:
            parsed = [m for text in matchers for m in stored_matchers(text)]
        except ValidationFailed as exc:
            # Written before matchers followed Alertmanager's grammar and RE2 (a lookahead,
            # say): one unreadable silence must not stop muting and correlation for all.
            if silence_id not in _UNREADABLE:
                _UNREADABLE.add(silence_id)
                log.warning("silence %s mutes nothing: %s", silence_id, exc.message)
            continue
        out.append(ActiveSilence(silence_id, tuple(parsed), service))
    return out


_UNREADABLE: set[str] = set()


@lru_cache(maxsize=4096)
def stored_matchers(text: str) -> tuple[Matcher, ...]:
    """The matchers a silence stored as text; parsed and compiled once per process."""
    return tuple(parse_matchers(text))


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

    def inhibitors(
        self,
        session: Session,
        alert: Alert,
        labels: Mapping[str, str],
        cache: dict[tuple[Any, ...], list[tuple[str, dict[str, str]]]] | None = None,
    ) -> list[str]:
        """Fingerprints of firing, unmuted alerts that inhibit this one.

        Sources depend only on the rule and the values of its `equal` labels, so a caller
        that passes a cache asks the database once per such pair, not once per alert.
        """
        found: set[str] = set()
        for number, (source, target, equal) in enumerate(self._rules):
            if not matches_all(target, labels):
                continue
            key = (number, tuple(labels.get(k, "") for k in equal))
            sources = None if cache is None else cache.get(key)
            if sources is None:
                sources = self._sources(session, source, equal, labels)
                if cache is not None:
                    cache[key] = sources
            found.update(fp for fp, _ in sources if fp != alert.fingerprint)
        return sorted(found)

    def inhibitor_columns(
        self, session: Session, fingerprints: Sequence[str]
    ) -> list[tuple[str | None, dict[str, str], str]]:
        """Service, labels and fingerprint of the alerts inhibiting these firing ones now,
        under rules that may reach another service; none under rules within one service
        (the default), whose inhibitors stand where their targets do.

        Read before the incident stage locks its partitions, so that it locks those of the
        incidents its muted alerts will join too, in the one global order, rather than
        after its first locks (where two such jobs could deadlock)."""
        if all("__service__" in equal for _, _, equal in self._rules):
            return []
        cache: dict[tuple[Any, ...], list[tuple[str, dict[str, str]]]] = {}
        found: set[str] = set()
        for alert in session.scalars(
            select(Alert)
            .where(ALERTS.c.fingerprint.in_(fingerprints))
            .where(ALERTS.c.status == AlertStatus.FIRING)
        ):
            found.update(self.inhibitors(session, alert, match_labels(alert), cache))
        if not found:
            return []
        return [
            (service, labels, fingerprint)
            for service, labels, fingerprint in session.execute(
                select(ALERTS.c.service, ALERTS.c.labels, ALERTS.c.fingerprint).where(
                    ALERTS.c.fingerprint.in_(sorted(found))
                )
            )
        ]

    def warm(
        self,
        session: Session,
        targets: Sequence[Mapping[str, str]],
        cache: dict[tuple[Any, ...], list[tuple[str, dict[str, str]]]],
    ) -> None:
        """Fetch the sources for many targets at once (rules keyed on `__service__`)."""
        for number, (source, target, equal) in enumerate(self._rules):
            if "__service__" not in equal:
                continue
            keys = {
                tuple(labels.get(k, "") for k in equal)
                for labels in targets
                if matches_all(target, labels)
            }
            keys = {k for k in keys if (number, k) not in cache}
            if not keys:
                continue
            services = sorted({k[equal.index("__service__")] for k in keys})
            found: dict[tuple[str, ...], list[tuple[str, dict[str, str]]]] = {k: [] for k in keys}
            query = self._source_query(source).where(ALERTS.c.service.in_(services))
            for candidate in session.scalars(query):
                candidate_labels = match_labels(candidate)
                if not matches_all(source, candidate_labels):
                    continue
                key = tuple(candidate_labels.get(k, "") for k in equal)
                if key in found:
                    found[key].append((candidate.fingerprint, candidate_labels))
            for key, sources in found.items():
                cache[(number, key)] = sources

    def _source_query(self, source: list[Matcher]) -> Any:
        query = (
            select(Alert)
            .outerjoin(STATES, STATES.c.fingerprint == ALERTS.c.fingerprint)
            .where(ALERTS.c.status == AlertStatus.FIRING)
            # An ignored alert takes part in nothing, inhibition included.
            .where(ALERTS.c.ignored_by.is_(None))
            # A source that is itself muted inhibits nothing (as in Alertmanager).
            .where(
                (STATES.c.fingerprint.is_(None))
                | ((STATES.c.silenced_by == []) & (STATES.c.inhibited_by == []))
            )
        )
        # Narrow in SQL where a matcher names a derived column.
        for m in source:
            if m.op is Op.EQ and m.name == "__severity__":
                query = query.where(ALERTS.c.severity == m.value)
            if m.op is Op.EQ and m.name == "__service__":
                query = query.where(ALERTS.c.service == m.value)
        return query

    def _sources(
        self, session: Session, source: list[Matcher], equal: list[str], labels: Mapping[str, str]
    ) -> list[tuple[str, dict[str, str]]]:
        query = self._source_query(source)
        if "__service__" in equal:
            query = query.where(ALERTS.c.service == (labels.get("__service__") or None))
        if "__severity__" in equal:
            query = query.where(ALERTS.c.severity == labels.get("__severity__"))
        out = []
        for candidate in session.scalars(query.limit(1000)):
            candidate_labels = match_labels(candidate)
            if not matches_all(source, candidate_labels):
                continue
            if all(candidate_labels.get(k, "") == labels.get(k, "") for k in equal):
                out.append((candidate.fingerprint, candidate_labels))
        return out
