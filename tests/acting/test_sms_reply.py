"""The SMS reply forms, read without a service."""

from __future__ import annotations

import pytest

from incidents.acting.sms_reply import Command, parse
from incidents.notify.channels.sms import ack_code, close_code


@pytest.mark.parametrize(
    ("body", "command"),
    [
        ("12a", Command("act", "acknowledge", "code", 12)),
        (" 12C\n", Command("act", "resolve", "code", 12)),
        ("3 a", Command("act", "acknowledge", "code", 3)),
        ("ack 1234", Command("act", "acknowledge", "id", 1234)),
        ("Resolve #77", Command("act", "resolve", "id", 77)),
        ("close 5", Command("act", "resolve", "id", 5)),
        ("a", Command("act", "acknowledge", "last")),
        ("C", Command("act", "resolve", "last")),
        ("AA", Command("act", "acknowledge", "all")),
        (" cc ", Command("act", "resolve", "all")),
        ("STOP", Command("opt_out", word="stop")),
        ("unsubscribe", Command("opt_out", word="unsubscribe")),
        ("Quit", Command("opt_out", word="quit")),
        ("start", Command("opt_in", word="start")),
        ("UNSTOP", Command("opt_in", word="unstop")),
    ],
)
def test_understood(body: str, command: Command) -> None:
    assert parse(body) == command


@pytest.mark.parametrize("body", ["", "hello", "ac", "12x", "ack", "ack me", "12345a", "a a a"])
def test_not_understood(body: str) -> None:
    assert parse(body) is None


def test_codes_fall_back_to_the_incident_id() -> None:
    assert (ack_code(3, 1234), close_code(3, 1234)) == ("3a", "3c")
    assert (ack_code(None, 1234), close_code(None, 1234)) == ("ack 1234", "resolve 1234")
    assert parse(ack_code(None, 1234)) == Command("act", "acknowledge", "id", 1234)
