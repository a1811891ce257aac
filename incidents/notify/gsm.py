"""SMS encoding and segment counting: GSM-7 when every character allows it, else UCS-2.

A carrier bills and delivers an SMS by segments. A GSM-7 text of up to 160 septets is one
segment; a longer one is split into segments of 153 septets (the rest carries the
concatenation header), and a character of the extension table costs two septets (escape
plus code) that are never split across segments. A text with any other character goes
as UCS-2: 70 UTF-16 code units in one segment, else 67 per segment, and a surrogate pair
is never split either.
"""

from __future__ import annotations

# 3GPP TS 23.038 default alphabet, without the escape code itself (0x1B), which is not a
# character a text can contain.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each of these is sent as escape + code, two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160
GSM7_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67


def is_gsm7(text: str) -> bool:
    """Whether the text can be sent in the GSM-7 alphabet (basic set plus extension)."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _costs(text: str) -> tuple[list[int], int, int]:
    """Each character's cost in septets or UTF-16 units, with the single/multi limits."""
    if is_gsm7(text):
        return [2 if c in GSM7_EXTENSION else 1 for c in text], GSM7_SINGLE, GSM7_MULTI
    return [2 if ord(c) > 0xFFFF else 1 for c in text], UCS2_SINGLE, UCS2_MULTI


def _pack(costs: list[int], per_segment: int) -> int:
    """Segments needed when no character may straddle two segments."""
    count, used = 1, 0
    for cost in costs:
        if used + cost > per_segment:
            count, used = count + 1, 0
        used += cost
    return count


def units(text: str) -> int:
    """The text's length in septets (GSM-7) or UTF-16 code units (UCS-2)."""
    return sum(_costs(text)[0])


def segments(text: str) -> int:
    """How many SMS segments the text takes (an empty text still takes one)."""
    costs, single, multi = _costs(text)
    if sum(costs) <= single:
        return 1
    return _pack(costs, multi)


def ellipsis_for(text: str) -> str:
    """The ellipsis that keeps the text's encoding: '…' is not in GSM-7, so '...' there."""
    return "..." if is_gsm7(text) else "…"


def fit(text: str, max_segments: int) -> str:
    """The text itself if it fits; else its longest prefix plus an ellipsis that fits."""
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    if segments(text) <= max_segments:
        return text
    mark = ellipsis_for(text)
    # Cutting only removes characters, so the count falls as the prefix shrinks; a binary
    # search finds the longest prefix that fits.
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if segments(text[:middle] + mark) <= max_segments:
            low = middle
        else:
            high = middle - 1
    return text[:low] + mark
