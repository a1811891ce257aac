"""Building schedules in tests: documents from keyword arguments, instants in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from incidents.oncall.documents import Schedule
from incidents.oncall.timeline import Plan, Slot


def utc(text: str) -> datetime:
    """An ISO time as an aware UTC datetime (a time without zone is taken as UTC)."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def layer(users: list[str], rotation: str, handoff: str, **extra: Any) -> dict[str, Any]:
    """A layer document."""
    return {"users": users, "rotation": rotation, "handoff": handoff, **extra}


def plan(*layers: dict[str, Any], time_zone: str = "UTC", **extra: Any) -> Plan:
    """The compiled schedule `s` of these layers."""
    schedule = Schedule.model_validate(
        {"name": "s", "time_zone": time_zone, "layers": list(layers), **extra}
    )
    return Plan(schedule)


def who(p: Plan, at: str) -> str | None:
    """Who is on call at an ISO time."""
    return p.at(utc(at)).user


def spans(slots: list[Slot]) -> list[tuple[str, str, str | None]]:
    """Slots as (start, end, user) in compact UTC text, for comparing with a literal."""
    return [(_t(s.start), _t(s.end), s.user) for s in slots]


def _t(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%m-%d %H:%M")
