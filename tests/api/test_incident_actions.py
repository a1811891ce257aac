"""Acting on incidents through the API: every transition, its 409 naming the current state,
its timeline entry with who, and the notifications it calls for (the real slack-sdk
talking to the local Slack stand-in)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.incident_pipe import Pipeline, alert, recent
from tests.conftest import AUTH
from tests.notify.fake_slack import FakeSlack
from tests.notify.test_routing_stage import ROUTING, notifications, wait_until


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def pipe(db_url: str, client_for: Callable[..., TestClient], slack: FakeSlack) -> Pipeline:
    client = client_for(
        db_url,
        routing=ROUTING,
        slack_bot_token=slack.token,
        slack_api_url=slack.api_url,
        correlation={"open_hold_seconds": 0},
        notify={"public_url": "http://incidents.test"},
    )
    pipeline = Pipeline(client, db_url)
    pipeline.load_graph()
    return pipeline


def act(pipe: Pipeline, incident_id: int, action: str, body: Any = None) -> Any:
    if body is None:
        return pipe.client.post(f"/api/v1/incidents/{incident_id}/{action}", headers=AUTH)
    return pipe.client.post(f"/api/v1/incidents/{incident_id}/{action}", json=body, headers=AUTH)


def timeline(pipe: Pipeline, incident_id: int) -> list[dict[str, Any]]:
    response = pipe.client.get(f"/api/v1/incidents/{incident_id}", headers=AUTH)
    entries: list[dict[str, Any]] = response.json()["timeline"]
    return entries


def opened(pipe: Pipeline, service: str = "database-postgres", severity: str = "P0") -> int:
    pipe.post(alert(service, f"{service}-down", recent(5), severity))
    [incident] = [i for i in pipe.live() if service in i["services"]]
    return int(incident["id"])


def test_acknowledge_stops_nothing_twice_and_updates_slack(
    pipe: Pipeline, slack: FakeSlack
) -> None:
    iid = opened(pipe)
    wait_until("the page", lambda: len(slack.top_level()) == 1)

    response = act(pipe, iid, "acknowledge", {"message": "on it", "by": "alice"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "acknowledged" and body["status"] == "open"
    assert body["acknowledged_by"] == "alice" and body["acknowledged_at"]
    [entry] = [e for e in timeline(pipe, iid) if e["kind"] == "acknowledged"]
    assert entry["actor"] == "alice" and "on it" in entry["message"]
    # The incident's Slack message now says so, and loses its Acknowledge button.
    wait_until("the edit", lambda: len(slack.calls("chat.update")) == 1)
    [edit] = slack.calls("chat.update")
    assert "acknowledged" in edit.body["text"]
    buttons = [e["action_id"] for b in edit.body["blocks"] for e in b.get("elements", [])]
    assert "acknowledge" not in buttons and "resolve" in buttons
    wait_until("the reply", lambda: len(slack.calls("chat.postMessage")) == 2)
    reply = slack.calls("chat.postMessage")[1]
    assert "acknowledged by alice" in reply.body["text"] and "on it" in reply.body["text"]
    assert len(slack.top_level()) == 1

    again = act(pipe, iid, "acknowledge")
    assert again.status_code == 409
    assert "it is acknowledged" in again.json()["message"]


def test_an_empty_body_is_fine_and_the_actor_defaults_to_the_key(pipe: Pipeline) -> None:
    iid = opened(pipe)
    response = pipe.client.post(f"/api/v1/incidents/{iid}/acknowledge", content=b"", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["acknowledged_by"] == "bootstrap-token"


def test_status_moves_through_the_working_states(pipe: Pipeline) -> None:
    iid = opened(pipe)
    # From triggered, a working status acknowledges too.
    first = act(pipe, iid, "status", {"status": "investigating", "by": "bob"})
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "investigating"
    assert first.json()["acknowledged_by"] == "bob"
    assert act(pipe, iid, "status", {"status": "identified"}).json()["state"] == "identified"
    same = act(pipe, iid, "status", {"status": "identified"})
    assert same.status_code == 409 and "it is identified" in same.json()["message"]
    bad = act(pipe, iid, "status", {"status": "resolved"})
    assert bad.status_code == 422 and "status" in bad.text
    kinds = [e["kind"] for e in timeline(pipe, iid)]
    assert kinds.count("status_changed") == 2


def test_resolve_then_reopen_pages_each_time(pipe: Pipeline, slack: FakeSlack) -> None:
    iid = opened(pipe)
    resolved = act(pipe, iid, "resolve", {"message": "failover done", "by": "carol"})
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["state"], resolved.json()["status"]) == ("resolved", "resolved")
    assert act(pipe, iid, "resolve").status_code == 409
    assert act(pipe, iid, "acknowledge").status_code == 409
    [entry] = [e for e in timeline(pipe, iid) if e["kind"] == "resolved"]
    assert entry["actor"] == "carol" and "failover done" in entry["message"]

    reopened = act(pipe, iid, "reopen", {"message": "it is back"})
    assert reopened.status_code == 200, reopened.text
    assert (reopened.json()["state"], reopened.json()["status"]) == ("triggered", "open")
    assert reopened.json()["acknowledged_by"] is None
    assert act(pipe, iid, "reopen").status_code == 409
    events = {n["event"] for n in notifications(pipe, iid)}
    assert {"opened", "resolved", "reopened"} <= events


def test_notes_assign_and_severity(pipe: Pipeline) -> None:
    iid = opened(pipe, "user-service", "P2")
    assert act(pipe, iid, "notes", {"message": "  "}).status_code == 422
    note = act(pipe, iid, "notes", {"message": "looking at the pool", "by": "dan"})
    assert note.status_code == 200, note.text
    assigned = act(pipe, iid, "assign", {"assignee": "erin"})
    assert assigned.json()["assignee"] == "erin"
    assert act(pipe, iid, "assign", {"assignee": "erin"}).status_code == 409
    assert act(pipe, iid, "assign", {}).status_code == 422
    # Lowering is recorded; raising above what was paged pages again.
    lowered = act(pipe, iid, "severity", {"severity": "P3"})
    assert lowered.status_code == 200 and lowered.json()["severity"] == "P3"
    raised = act(pipe, iid, "severity", {"severity": "P0"})
    assert raised.json()["severity"] == "P0" and raised.json()["paged_severity"] == "P0"
    assert act(pipe, iid, "severity", {"severity": "P9"}).status_code == 422
    kinds = [e["kind"] for e in timeline(pipe, iid)]
    assert {"note", "assigned", "severity_changed", "severity_raised"} <= set(kinds)
    raised_rows = [n for n in notifications(pipe, iid) if n["event"] == "severity_raised"]
    # A P0 now: the P0 route takes it.
    assert raised_rows and {n["target"] for n in raised_rows} == {"#incidents-critical"}


def test_merge_folds_open_incidents_and_refuses_the_rest(pipe: Pipeline) -> None:
    target = opened(pipe, "database-postgres", "P0")
    source = opened(pipe, "ai-models-bedrock", "P2")
    assert target != source
    merged = act(pipe, target, "merge", {"from": [source], "message": "same outage"})
    assert merged.status_code == 200, merged.text
    assert "ai-models-bedrock" in merged.json()["services"]
    [gone] = pipe.incidents(status="merged")
    assert gone["id"] == source and gone["merged_into"] == target
    assert any(
        e["kind"] == "merged" and "same outage" in e["message"] for e in timeline(pipe, target)
    )
    assert act(pipe, target, "merge", {"from": [source]}).status_code == 409
    assert act(pipe, target, "merge", {"from": [target]}).status_code == 409
    missing = act(pipe, target, "merge", {"from": [999999]})
    assert missing.status_code == 404 and "999999" in missing.json()["message"]
    assert act(pipe, target, "merge", {"from": []}).status_code == 422
    assert act(pipe, source, "acknowledge").status_code == 409  # act on the survivor


def test_bad_requests_name_what_was_wrong(pipe: Pipeline) -> None:
    iid = opened(pipe)
    unknown = act(pipe, 999999, "acknowledge")
    assert unknown.status_code == 404 and "999999" in unknown.json()["message"]
    extra = act(pipe, iid, "acknowledge", {"mesage": "typo"})
    assert extra.status_code == 422 and "mesage" in extra.text
    broken = pipe.client.post(
        f"/api/v1/incidents/{iid}/acknowledge",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert broken.status_code in (400, 422) and broken.status_code != 500
