"""A schedule's shifts as an iCalendar feed (RFC 5545), for calendar apps to subscribe to.

Lines end in CRLF and are folded at 75 octets without splitting a UTF-8 character; times
are UTC (`...Z`). Each shift's UID is derived from what it is (schedule, person, source,
start, end), so a calendar that fetches the feed again updates events instead of
duplicating them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from incidents.oncall.timeline import Slot

PRODID: Final = "-//incidents//on-call schedules//EN"
_LIMIT: Final = 75


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def escape(text: str) -> str:
    """A TEXT value: backslash, semicolon, comma and newlines escaped."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def fold(line: str) -> str:
    """One content line folded into lines of at most 75 octets, joined by CRLF + space."""
    parts: list[str] = []
    current = ""
    size = 0
    limit = _LIMIT
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            parts.append(current)
            # A continuation line starts with a space, which counts towards its 75.
            current, size, limit = "", 0, _LIMIT - 1
        current += char
        size += width
    parts.append(current)
    return "\r\n ".join(parts)


def _uid(schedule: str, slot: Slot) -> str:
    key = "|".join(
        [schedule, slot.user or "", slot.source or "", _time(slot.start), _time(slot.end)]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32] + "@incidents"


def calendar(schedule: str, slots: Iterable[Slot], *, now: datetime) -> str:
    """The VCALENDAR text of the shifts (gaps are left out)."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{escape(f'On call: {schedule}')}",
    ]
    stamp = _time(now)
    for slot in slots:
        if slot.user is None:
            continue
        source = slot.source or ""
        lines += [
            "BEGIN:VEVENT",
            f"UID:{_uid(schedule, slot)}",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{_time(slot.start)}",
            f"DTEND:{_time(slot.end)}",
            f"SUMMARY:{escape(f'{slot.user} on call ({schedule})')}",
            f"DESCRIPTION:{escape(f'{slot.user} is on call for {schedule} ({source}).')}",
            "TRANSP:TRANSPARENT",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)
