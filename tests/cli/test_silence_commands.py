"""`incidents silence add|query|expire` and `incidents oncall` against a real service."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.cli.conftest import Outcome, Service, eventually


def test_add_query_expire_and_the_silence_really_mutes(
    service: Service, cli: Callable[..., Outcome]
) -> None:
    added = cli(
        "silence", "add", 'alertname="CliMuted"', 'service="cli-db"', "-d", "2h", "-c", "upgrade"
    )
    assert added.code == 0, added.err
    silence_id = added.out.strip()
    stored = service.api.get(f"/api/v1/silences/{silence_id}").json()
    assert stored["matchers"] == ['alertname="CliMuted"', 'service="cli-db"']
    assert stored["comment"] == "upgrade" and stored["state"] == "active"
    assert stored["created_by"]  # the local user name

    fingerprint = service.post_alert("CliMuted", "cli-db")

    def muted() -> dict[str, Any] | None:
        alert: dict[str, Any] = service.api.get(f"/api/v1/alerts/{fingerprint}").json()
        return alert if alert["silenced_by"] else None

    assert eventually(muted, "the alert to be silenced")["silenced_by"] == [silence_id]
    shown = cli("alert", "query", "CliMuted")
    assert "silenced" in shown.out

    listed = cli("silence", "query", 'alertname="CliMuted"')
    assert listed.code == 0, listed.err
    assert silence_id in listed.out and "upgrade" in listed.out and "active" in listed.out
    assert cli("silence", "query", "-q", "alertname=Other").out == ""
    quiet = cli("silence", "query", "-q", 'service=~"cli-.*"')
    assert quiet.out.split() == [silence_id]
    as_json = json.loads(cli("silence", "query", "-o", "json", "CliMuted").out)
    assert [s["id"] for s in as_json] == [silence_id]

    expired = cli("silence", "expire", silence_id)
    assert (expired.code, expired.err) == (0, "")
    assert service.api.get(f"/api/v1/silences/{silence_id}").json()["state"] == "expired"
    assert silence_id not in cli("silence", "query", "-q").out
    assert silence_id in cli("silence", "query", "--expired", "-q").out


def test_silence_input_errors(cli: Callable[..., Outcome]) -> None:
    bad_duration = cli("silence", "add", "alertname=X", "-d", "2 fortnights", "-c", "c")
    assert bad_duration.code == 2 and "--duration" in bad_duration.err
    nothing = cli("silence", "add", "-c", "c")
    assert nothing.code == 2 and "at least one matcher" in nothing.err
    everything = cli("silence", "add", 'alertname=~".*"', "-c", "c")
    assert everything.code == 1
    assert "would mute everything" in everything.err and "(HTTP 422)" in everything.err
    unknown = cli("silence", "expire", "no-such-silence")
    assert unknown.code == 1
    assert (
        unknown.err.strip() == "incidents: no-such-silence: no silence 'no-such-silence' (HTTP 404)"
    )


def test_oncall_now(cli: Callable[..., Outcome]) -> None:
    every = cli("oncall")
    assert every.code == 0, every.err
    header, row = every.out.splitlines()
    assert header.split()[:3] == ["SCHEDULE", "ON", "CALL"]
    assert row.split()[:2] == ["primary", "alice"]
    one = json.loads(cli("oncall", "primary", "-o", "json").out)
    assert (one["schedule"], one["users"], one["gap"]) == ("primary", ["alice"], False)
    missing = cli("oncall", "nobody-here")
    assert missing.code == 1 and "(HTTP 404)" in missing.err
