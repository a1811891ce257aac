"""Root-cause candidates of a group of alerting services, most likely first, with reasons.

Order: first the silent common dependencies (services without an alert that lie within hops
below at least two roots), by how many roots each explains, then name; then the roots, by
earliest alert, then severity, then name; then the other alerting services in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from incidents.correlation.rule import CorrelationRule
from incidents.vocab import severity_rank

__all__ = ["Candidate", "ServiceSeen", "rank_candidates"]

MAX_CANDIDATES: Final = 20
# A storm can put thousands of alerting services above one database: the list and the
# sentence that names them stay readable and small enough to store with the incident.
MAX_EXPLAINS: Final = 100
NAMES_IN_REASON: Final = 5

Order = Callable[[str], tuple[float, int, str]]


@dataclass(frozen=True, slots=True)
class ServiceSeen:
    """What the alerts of one service say: when it first alerted and how urgently."""

    first: datetime
    worst: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """One possible root cause and why; inferred means it has no alert of its own."""

    service: str
    inferred: bool
    reason: str
    explains: tuple[str, ...]

    def as_data(self) -> dict[str, Any]:
        """A JSON-ready mapping of the candidate."""
        return {
            "service": self.service,
            "inferred": self.inferred,
            "reason": self.reason,
            "explains": list(self.explains),
        }


def rank_candidates(
    rule: CorrelationRule, seen: Mapping[str, ServiceSeen], limit: int = MAX_CANDIDATES
) -> list[Candidate]:
    """The root-cause candidates of the alerting services in `seen`, at most `limit`."""
    if limit <= 0 or not seen:
        return []

    def order(name: str) -> tuple[float, int, str]:
        return (_timestamp(seen[name].first), severity_rank(seen[name].worst), name)

    roots = sorted(rule.roots(seen), key=order)
    found: list[Candidate] = []
    if len(roots) >= 2:
        found.extend(_silent_common(rule, roots, seen, order, limit))
    for root in roots[: limit - len(found)]:
        explains = _explained(rule, root, seen, order)
        reason = "root: nothing else alerting lies below it"
        if explains:
            reason += f"; explains {names_in_reason(explains)}"
        found.append(Candidate(root, False, reason, explains))
    if len(found) >= limit:
        return found
    root_set = set(roots)
    others = sorted((name for name in seen if name not in root_set), key=order)
    for name in others[: limit - len(found)]:
        found.append(_not_a_root(rule, name, seen, order))
    return found


def _silent_common(
    rule: CorrelationRule,
    roots: Sequence[str],
    seen: Mapping[str, ServiceSeen],
    order: Order,
    limit: int,
) -> list[Candidate]:
    """Services without an alert within hops below two or more roots, most roots first."""
    below_roots: dict[str, dict[str, int]] = {}
    # One bounded search per root: cost follows the roots' neighbourhoods, not the graph.
    for root in roots:
        for service, depth in rule.below(root).items():
            if service not in seen:
                below_roots.setdefault(service, {})[root] = depth
    common = sorted(
        (service for service, found in below_roots.items() if len(found) >= 2),
        key=lambda service: (-len(below_roots[service]), service),
    )
    candidates = []
    for service in common[:limit]:
        found = below_roots[service]
        explained = sorted(found, key=order)
        verb = "both depend" if len(explained) == 2 else "all depend"
        deepest = max(found.values())
        reach = f" within {deepest} hops" if deepest > 1 else ""
        reason = f"{service} (no alert; {names_in_reason(explained)} {verb} on it{reach})"
        explains = _explained(rule, service, seen, order)
        candidates.append(Candidate(service, True, reason, explains))
    return candidates


def _not_a_root(
    rule: CorrelationRule, name: str, seen: Mapping[str, ServiceSeen], order: Order
) -> Candidate:
    """An alerting service that depends on other alerting services within hops."""
    own = rule.node(name)
    below = {
        service: depth
        for service, depth in rule.below(name).items()
        if service in seen and rule.node(service) != own
    }
    deeper = sorted(below, key=order)
    deepest = max(below.values(), default=0)
    reach = f" within {deepest} hops" if deepest > 1 else ""
    reason = f"not a root: depends on alerting {names_in_reason(deeper)}{reach}"
    return Candidate(name, False, reason, _explained(rule, name, seen, order))


def _explained(
    rule: CorrelationRule, service: str, seen: Mapping[str, ServiceSeen], order: Order
) -> tuple[str, ...]:
    """The alerting services other than `service` that lie within hops above it."""
    above = [name for name in rule.above(service) if name in seen and name != service]
    return tuple(sorted(above, key=order)[:MAX_EXPLAINS])


def names_in_reason(names: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'; long lists end in 'and N more'."""
    shown = list(names[:NAMES_IN_REASON])
    hidden = len(names) - len(shown)
    if hidden:
        return f"{', '.join(shown)} and {hidden} more"
    if len(shown) <= 1:
        return "".join(shown)
    return f"{', '.join(shown[:-1])} and {shown[-1]}"


def _timestamp(moment: datetime) -> float:
    # Naive times are taken as UTC so they compare with aware ones.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
