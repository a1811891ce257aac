"""place(): where a new alert goes under correlation rule v2, and why.

The rule (the README quotes it in full): an alert joins the incident of the alerting
service nearest below it that explains it; a new alert that explains the roots of open
incidents becomes their root (re-rooting one, or merging several: a common cause was
found); a new root linked to the roots of open incidents through a shared dependency
joins them, merging them when there are several; anything else opens an incident. Time
counts as alert-to-alert chains within the window.

Cases the rule leaves open, decided here:
- Among several explaining services the nearest wins; on a tie a root of its incident,
  then the earliest incident, then the lowest id. The rest are `possibly_related`.
- An alert that explains the roots of some incidents and is itself explained by another
  incident's service closes a chain: all of them are one failure and merge.
- A new alert that is a root where it lands (no alerting service explains it) and is
  linked to the roots of several open incidents merges them: linked roots belong to one
  incident, whichever of them arrived first. A symptom never merges incidents; it joins
  the nearest and records the others as `possibly_related`.
- The oldest incident always survives a merge, so ids that people have seen stay valid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from incidents.correlation.candidates import names_in_reason
from incidents.correlation.index import IncidentIndex
from incidents.correlation.rule import CorrelationRule

Action = Literal["open", "join", "reroot", "merge"]


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """What placement needs to know of an open incident."""

    id: int
    opened_at: datetime
    roots: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Placement:
    """The decision for one alert: open, or join `target` (absorbing `absorbed`)."""

    action: Action
    reason: str
    target: int | None = None
    absorbed: tuple[int, ...] = ()
    via: str | None = None
    hops: int | None = None
    possibly_related: tuple[int, ...] = ()
    # True when the alert's service becomes a root of the incident it lands in.
    becomes_root: bool = True

    def as_data(self) -> dict[str, Any]:
        """The `joined_because` record kept on the alert's membership."""
        return {
            "action": self.action,
            "reason": self.reason,
            "via": self.via,
            "hops": self.hops,
            "absorbed": list(self.absorbed),
            "possibly_related": list(self.possibly_related),
        }


@dataclass(order=True, slots=True)
class _Best:
    key: tuple[Any, ...]
    incident: OpenIncident = field(compare=False)
    via: str = field(compare=False)
    hops: int = field(compare=False)
    extra: int = field(default=0, compare=False)


def _hops(n: int) -> str:
    return f"{n} hop" if n == 1 else f"{n} hops"


def place(
    rule: CorrelationRule,
    service: str,
    starts_at: datetime,
    index: IncidentIndex,
    incident: Callable[[int], OpenIncident],
    window: timedelta,
) -> Placement:
    """Where an alert on `service` that started at `starts_at` belongs."""
    linked = rule.linked_to(service)
    below = rule.below(service)
    above = rule.above(service)
    own = rule.node(service)
    explained: dict[int, _Best] = {}
    caused: dict[int, _Best] = {}
    siblings: dict[int, _Best] = {}
    for link in index.links_near(linked, starts_at - window, starts_at + window):
        found = incident(link.incident_id)
        other = link.service
        is_root = other in found.roots
        if other in below:
            distance = below[other]
            key = (distance, not is_root, found.opened_at, found.id, other)
            _keep(explained, _Best(key, found, other, distance))
        elif is_root and other in above and rule.node(other) != own:
            distance = above[other]
            _keep(
                caused, _Best((distance, found.opened_at, found.id, other), found, other, distance)
            )
        elif is_root:
            witness = linked[other]
            near = (witness.total, found.opened_at, found.id, other)
            best = _Best(near, found, other, witness.left, witness.right)
            _keep(siblings, best)
            best.via = f"{other}|{witness.via}"
    if caused:
        # A symptom (explained) closes a chain at most; a root also brings linked roots.
        return _as_cause(service, explained, caused, {} if explained else siblings)
    if explained:
        return _as_symptom(service, explained)
    if siblings:
        return _as_sibling(service, siblings)
    return Placement("open", "opened the incident")


def _keep(into: dict[int, _Best], best: _Best) -> None:
    current = into.get(best.incident.id)
    if current is None or best < current:
        into[best.incident.id] = best


def _oldest(candidates: list[_Best]) -> OpenIncident:
    return min((c.incident for c in candidates), key=lambda i: (i.opened_at, i.id))


def _as_symptom(service: str, explained: dict[int, _Best]) -> Placement:
    ranked = sorted(explained.values())
    best = ranked[0]
    if best.via == service:
        reason = f"another alert on {service} is already in this incident"
    elif best.hops == 0:
        reason = f"{service} and {best.via} depend on each other (a dependency cycle)"
    else:
        reason = f"{service} depends on {best.via} ({_hops(best.hops)})"
    if best.via == service:
        pass
    elif best.via in best.incident.roots:
        reason += ", the root of this incident"
    else:
        reason += ", which is in this incident"
    return Placement(
        "join",
        reason,
        target=best.incident.id,
        via=best.via,
        hops=best.hops,
        possibly_related=tuple(sorted(b.incident.id for b in ranked[1:])),
        becomes_root=False,
    )


def _sibling_words(service: str, best: _Best) -> tuple[str, str]:
    """The linked root and why: "S and R both depend on C (1 hop and 1 hop)"."""
    root, common = best.via.split("|", 1)
    return root, (
        f"{service} and {root} both depend on {common} ({_hops(best.hops)} and {_hops(best.extra)})"
    )


def _as_cause(
    service: str,
    explained: dict[int, _Best],
    caused: dict[int, _Best],
    siblings: dict[int, _Best],
) -> Placement:
    ranked = sorted(caused.values())
    nearest = ranked[0]
    merging = list(ranked)
    linked = sorted(b for i, b in siblings.items() if i not in caused)
    merging.extend(linked)
    related: tuple[int, ...] = ()
    if explained:
        below = sorted(explained.values())
        merging.append(below[0])
        related = tuple(
            sorted({b.incident.id for b in below[1:]} - {b.incident.id for b in merging})
        )
    survivor = _oldest(merging)
    absorbed = tuple(sorted({b.incident.id for b in merging} - {survivor.id}))
    dependents = sorted({b.via for b in ranked})
    shown = names_in_reason(dependents)
    if not absorbed:
        return Placement(
            "reroot",
            f"{shown} {'depends' if len(dependents) == 1 else 'depend'} on {service} "
            f"({_hops(nearest.hops)}): {service} is the incident's new root",
            target=survivor.id,
            via=nearest.via,
            hops=nearest.hops,
            possibly_related=related,
            becomes_root=not explained,
        )
    ids = ", ".join(str(i) for i in sorted({survivor.id, *absorbed}))
    if explained:
        bottom = sorted(explained.values())[0]
        reason = (
            f"{shown} {'depends' if len(dependents) == 1 else 'depend'} on {service}, which "
            f"depends on {bottom.via} ({_hops(bottom.hops)}): one chain of failures, so "
            f"incidents {ids} merge"
        )
    elif not linked:
        verb = "both depend" if len(dependents) == 2 else "all depend"
        reason = f"{shown} {verb} on {service}: the common cause of incidents {ids}"
    else:
        _, words = _sibling_words(service, linked[0])
        reason = (
            f"{shown} {'depends' if len(dependents) == 1 else 'depend'} on {service}, and "
            f"{words}: linked roots belong to one incident, so incidents {ids} merge"
        )
    return Placement(
        "merge",
        reason,
        target=survivor.id,
        absorbed=absorbed,
        via=nearest.via,
        hops=nearest.hops,
        possibly_related=related,
        becomes_root=not explained,
    )


def _as_sibling(service: str, siblings: dict[int, _Best]) -> Placement:
    ranked = sorted(siblings.values())
    best = ranked[0]
    root, words = _sibling_words(service, best)
    common = best.via.split("|", 1)[1]
    if len(ranked) == 1:
        return Placement(
            "join",
            f"{words}; {root} is a root of this incident",
            target=best.incident.id,
            via=common,
            hops=best.hops,
            becomes_root=True,
        )
    # Linked roots belong to one incident: those that arrived apart merge into the oldest.
    survivor = _oldest(ranked)
    absorbed = tuple(sorted({b.incident.id for b in ranked} - {survivor.id}))
    ids = ", ".join(str(i) for i in sorted({survivor.id, *absorbed}))
    roots = sorted({b.via.split("|", 1)[0] for b in ranked})
    return Placement(
        "merge",
        f"{words}; {service} is linked to the roots {names_in_reason(roots)} of incidents {ids}: "
        "linked roots belong to one incident, so they merge",
        target=survivor.id,
        absorbed=absorbed,
        via=common,
        hops=best.hops,
        becomes_root=True,
    )
