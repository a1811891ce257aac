"""`incidents alert query` and `incidents incident ...` against a real running service."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.cli.conftest import Outcome, Service


def test_alert_query_filters_with_matchers_and_prints_a_table(
    service: Service, cli: Callable[..., Outcome]
) -> None:
    wanted = service.post_alert("CliDiskFull", "cli-storage")
    other = service.post_alert("CliLatency", "cli-web", severity="warning")
    service.incident_of(wanted)
    service.incident_of(other)

    shown = cli("alert", "query", 'alertname="CliDiskFull"')
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0].split()[:4] == ["ALERTNAME", "SERVICE", "SEV", "STATUS"]
    assert "CliDiskFull" in shown.out and "cli-storage" in shown.out
    assert "CliLatency" not in shown.out
    # A bare word is an alertname, as amtool reads it; the JSON is the server's.
    as_json = cli("alert", "query", "CliLatency", "-o", "json")
    items = json.loads(as_json.out)
    assert [a["fingerprint"] for a in items] == [other]
    assert items[0]["labels"]["service"] == "cli-web"
    regex = cli(
        "alert", "query", '{service=~"cli-(storage|web)"}', "--severity", "P0", "-o", "json"
    )
    assert [a["fingerprint"] for a in json.loads(regex.out)] == [wanted]


def test_a_bad_matcher_is_a_usage_error_named_before_any_request(
    cli: Callable[..., Outcome],
) -> None:
    outcome = cli("alert", "query", 'job=~"("', url="http://127.0.0.1:9")
    assert outcome.code == 2
    assert "invalid regular expression" in outcome.err
    assert "cannot reach" not in outcome.err and "Traceback" not in outcome.err


def test_list_show_ack_note_resolve(service: Service, cli: Callable[..., Outcome]) -> None:
    fingerprint = service.post_alert("CliCheckoutDown", "cli-checkout")
    incident = service.incident_of(fingerprint)
    number = str(incident["id"])

    listed = cli("incident", "list", "--service", "cli-checkout")
    assert listed.code == 0, listed.err
    header, *rows = listed.out.splitlines()
    assert header.split()[:4] == ["ID", "SEV", "STATUS", "STATE"]
    assert [r.split()[:4] for r in rows] == [[number, "P0", "open", "triggered"]]
    as_json = json.loads(cli("incident", "list", "--state", "triggered", "-o", "json").out)
    assert incident["id"] in [i["id"] for i in as_json]

    shown = cli("incident", "show", number)
    assert shown.code == 0, shown.err
    assert f"#{number}  CliCheckoutDown" in shown.out
    assert "Roots:" in shown.out and "cli-checkout" in shown.out
    assert "Alerts (1):" in shown.out and fingerprint in shown.out
    assert "Timeline (last 1 of 1):" in shown.out and "opened" in shown.out

    acked = cli("incident", "ack", number, "-m", "on it", "--by", "dana")
    assert acked.code == 0, acked.err
    assert acked.out.strip() == f"incident #{number}: open (acknowledged)"
    noted = cli("incident", "note", number, "the", "pool", "is", "full", "--by", "dana")
    assert noted.code == 0, noted.err
    resolved = cli("incident", "resolve", "#" + number, "-o", "json", "--by", "dana")
    assert resolved.code == 0, resolved.err
    assert json.loads(resolved.out)["state"] == "resolved"

    detail: dict[str, Any] = service.api.get(f"/api/v1/incidents/{number}").json()
    assert detail["acknowledged_by"] == "dana"
    kinds = {t["kind"]: t for t in detail["timeline"]}
    assert "on it" in kinds["acknowledged"]["message"]
    assert kinds["note"]["actor"] == "dana" and "the pool is full" in kinds["note"]["message"]
    assert "resolved" in kinds

    shown = cli("incident", "show", number)
    assert "Timeline (last 4 of 4):" in shown.out and "the pool is full" in shown.out
    assert "Acknowledged:" in shown.out and "by dana" in shown.out


def test_server_refusals_are_its_message_and_exit_1(
    service: Service, cli: Callable[..., Outcome]
) -> None:
    fingerprint = service.post_alert("CliTwiceAcked", "cli-twice")
    number = str(service.incident_of(fingerprint)["id"])
    assert cli("incident", "ack", number).code == 0
    again = cli("incident", "ack", number)
    assert again.code == 1
    assert again.err.strip() == (
        f"incidents: cannot acknowledge incident {number}: it is acknowledged (HTTP 409)"
    )
    missing = cli("incident", "show", "999999")
    assert (missing.code, missing.err.strip()) == (1, "incidents: no incident 999999 (HTTP 404)")
    not_a_number = cli("incident", "show", "abc")
    assert not_a_number.code == 2 and "not an incident id" in not_a_number.err


def test_a_wrong_key_prints_the_servers_401_message(cli: Callable[..., Outcome]) -> None:
    outcome = cli("incident", "list", key="not-the-key")
    assert outcome.code == 1
    assert outcome.err.strip() == "incidents: invalid credentials (HTTP 401)"
    assert outcome.out == ""
    none = cli("alert", "query", key=None)
    assert none.code == 1 and "(HTTP 401)" in none.err and "no key was sent" in none.err
