"""Plain-text output: aligned tables with long cells cut, times in UTC, durations."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_CELL = 48
_DURATION = re.compile(r"(\d+)([wdhms])")
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def cut(text: str, width: int = MAX_CELL) -> str:
    """`text` on one line, at most `width` characters (an ellipsis marks a cut)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], last_wide: bool = True) -> str:
    """Columns aligned to their widest cell; the last column is cut less, for titles."""
    cells = [[cut("" if c is None else str(c)) for c in row] for row in rows]
    if last_wide:
        for row, raw in zip(cells, rows, strict=True):
            row[-1] = cut("" if raw[-1] is None else str(raw[-1]), 80)
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [headers, *cells]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    return "\n".join(out)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """`Name:  value` lines, the values aligned."""
    width = max(len(name) for name, _ in pairs) + 1
    return "\n".join(f"{(name + ':').ljust(width)}  {'' if v is None else v}" for name, v in pairs)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time from the API (UTC when it names no zone)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def when(text: str | None, now: datetime | None = None, zone: bool = False) -> str:
    """An API time in UTC as `2026-12-06 10:40:12 (5m ago)` (`zone`: with "UTC"); `-`."""
    if not text:
        return "-"
    moment = parse_time(text).astimezone(UTC)
    shown = moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if zone else "")
    delta = (now or datetime.now(UTC)) - moment
    if delta >= timedelta(0):
        return f"{shown} ({human(delta)} ago)"
    return f"{shown} (in {human(-delta)})"


def human(delta: timedelta) -> str:
    """A duration in its two largest units: `3d4h`, `5m`, `12s`."""
    left = int(delta.total_seconds())
    parts: list[str] = []
    for unit, size in _UNITS.items():
        if unit == "w":
            continue
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
        if len(parts) == 2:
            break
    return "".join(parts)


def parse_duration(text: str) -> timedelta:
    """`2h`, `90m`, `1h30m`, `1d`, `1w`: a positive duration, as amtool takes them."""
    stripped = text.strip()
    found = _DURATION.findall(stripped)
    if not found or "".join(n + u for n, u in found) != stripped:
        raise ValueError(f"{text!r} is not a duration such as 2h, 90m, 1h30m or 1d")
    seconds = sum(int(n) * _UNITS[u] for n, u in found)
    if seconds <= 0:
        raise ValueError(f"{text!r}: the duration must be positive")
    return timedelta(seconds=seconds)


def seconds(value: float | None) -> str:
    """A number of seconds as a short duration; `-` for none."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.0f}s"
    return human(timedelta(seconds=value))
