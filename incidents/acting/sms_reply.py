"""What an SMS reply asks for: the forms our texts teach, and Twilio's opt-out words.

    12a / 12c           acknowledge / close the incident this phone knows as 12
    ack 1234            acknowledge incident 1234 (also `resolve 1234`, `close 1234`)
    a / c               the incident last texted to this phone
    aa / cc             every open incident texted to this phone
    12y / 12n           approve / reject the playbook step incident 12 waits on
    y / n               the same, for the incident last texted to this phone
    approve 4821        approve (`reject 4821`: reject) the step with that approval code
    STOP ... / START    opt out of (back into) SMS

Case and surrounding whitespace do not matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

OPT_OUT = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"})
OPT_IN = frozenset({"start", "yes", "unstop"})
HELP = (
    "Reply 12a or 12c (ack/close your incident 12), 12y or 12n (approve/reject its "
    "playbook), a or c (the last), aa or cc (all), ack 1234"
)

Action = Literal["acknowledge", "resolve", "approve", "reject"]
Scope = Literal["code", "id", "last", "all", "approval"]

_CODE = re.compile(r"(\d{1,4})\s*([acyn])")
_BY_ID = re.compile(r"(ack|acknowledge|resolve|close)\s+#?(\d{1,18})")
_BY_APPROVAL = re.compile(r"(approve|reject)\s+#?(\d{1,9})")
_WORDS: dict[str, Action] = {
    "ack": "acknowledge",
    "acknowledge": "acknowledge",
    "resolve": "resolve",
    "close": "resolve",
}
_LETTER: dict[str, Action] = {"a": "acknowledge", "c": "resolve"}
# Answers to a playbook's approval request.
_DECISION: dict[str, Action] = {"y": "approve", "n": "reject"}


@dataclass(frozen=True, slots=True)
class Command:
    """One understood reply."""

    # act: on incidents; decide: on a playbook step waiting for approval.
    kind: Literal["act", "decide", "opt_out", "opt_in"]
    action: Action | None = None
    scope: Scope | None = None
    number: int | None = None
    word: str = ""


def parse(body: str) -> Command | None:
    """The command a reply says, or None when it is not understood."""
    text = " ".join(body.split()).lower()
    if text in OPT_OUT:
        return Command("opt_out", word=text)
    if text in OPT_IN:
        return Command("opt_in", word=text)
    if text in _LETTER:
        return Command("act", _LETTER[text], "last")
    if text in _DECISION:
        return Command("decide", _DECISION[text], "last")
    if len(text) == 2 and text[0] == text[1] and text[0] in _LETTER:
        return Command("act", _LETTER[text[0]], "all")
    match = _CODE.fullmatch(text)
    if match and match[2] in _DECISION:
        return Command("decide", _DECISION[match[2]], "code", int(match[1]))
    if match:
        return Command("act", _LETTER[match[2]], "code", int(match[1]))
    match = _BY_ID.fullmatch(text)
    if match:
        return Command("act", _WORDS[match[1]], "id", int(match[2]))
    match = _BY_APPROVAL.fullmatch(text)
    if match:
        verdict: Action = "approve" if match[1] == "approve" else "reject"
        return Command("decide", verdict, "approval", int(match[2]))
    return None
