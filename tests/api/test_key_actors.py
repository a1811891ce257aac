"""What a key does is recorded as its owner (else `key:<name>`): timeline entries,
silences (both APIs) and graph changes. Only an admin key may name someone else."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidents.db import utcnow
from tests.api.incident_pipe import Pipeline, alert, recent
from tests.api.keys import KEY_SECRET, bearer, make_key
from tests.conftest import AUTH
from tests.factories import am_payload, iso


@pytest.fixture
def keyed(db_url: str, client_for: Callable[..., TestClient]) -> Pipeline:
    client = client_for(
        db_url, auth={"key_secret": KEY_SECRET}, correlation={"open_hold_seconds": 0}
    )
    pipeline = Pipeline(client, db_url)
    pipeline.load_graph()
    return pipeline


def _timeline(pipe: Pipeline, incident_id: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = pipe.incident(incident_id)["timeline"]
    return entries


def test_incident_actions_record_the_keys_owner_or_name(keyed: Pipeline) -> None:
    client = keyed.client
    sender = make_key(client, "alertmanager", "alerts:write")
    alice = make_key(client, "alice-laptop", "incidents:write", owner="alice")
    chatops = make_key(client, "chatops", "incidents:write")
    payload = am_payload([alert("database-postgres", "db-down", recent(5), "P1")])
    sent = client.post("/api/v1/alerts/alertmanager", json=payload, headers=bearer(sender))
    assert sent.status_code == 200, sent.text
    keyed.wait()
    [incident] = keyed.live()
    iid = incident["id"]

    # A non-admin key cannot put someone else's name on the timeline.
    acked = client.post(
        f"/api/v1/incidents/{iid}/acknowledge",
        json={"message": "mine", "by": "mallory"},
        headers=bearer(alice),
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == "alice"
    noted = client.post(
        f"/api/v1/incidents/{iid}/notes", json={"message": "looking"}, headers=bearer(chatops)
    )
    assert noted.status_code == 200, noted.text
    # The bootstrap token (admin) may act for a person, as a bot does.
    by_bot = client.post(
        f"/api/v1/incidents/{iid}/notes", json={"message": "paged", "by": "bob"}, headers=AUTH
    )
    assert by_bot.status_code == 200, by_bot.text
    actors = {(e["kind"], e["actor"]) for e in _timeline(keyed, iid)}
    assert {("acknowledged", "alice"), ("note", "key:chatops"), ("note", "bob")} <= actors
    assert all(actor != "mallory" for _, actor in actors)


def test_silences_record_the_key_as_their_author(keyed: Pipeline) -> None:
    client = keyed.client
    alice = make_key(client, "alice-cli", "incidents:write", "incidents:read", owner="alice")
    ends = iso(utcnow() + timedelta(hours=1))
    made = client.post(
        "/api/v1/silences",
        json={"matchers": ['alertname="A"'], "ends_at": ends, "comment": "deploy"},
        headers=bearer(alice),
    )
    assert made.status_code == 201, made.text
    assert made.json()["created_by"] == "alice"
    claimed = client.post(
        "/api/v1/silences",
        json={"matchers": ["alertname=B"], "ends_at": ends, "comment": "x", "created_by": "eve"},
        headers=bearer(alice),
    )
    assert claimed.json()["created_by"] == "alice"
    # amtool sends the local user name as createdBy: the key's owner is recorded instead.
    v2 = client.post(
        "/api/v2/silences",
        json={
            "matchers": [{"name": "alertname", "value": "C", "isRegex": False}],
            "startsAt": iso(utcnow()),
            "endsAt": ends,
            "createdBy": "root",
            "comment": "maintenance",
        },
        headers=bearer(alice),
    )
    assert v2.status_code == 200, v2.text
    one = client.get(f"/api/v2/silence/{v2.json()['silenceID']}", headers=bearer(alice))
    assert one.json()["createdBy"] == "alice"
    by_admin = client.post(
        "/api/v1/silences",
        json={"matchers": ["alertname=D"], "ends_at": ends, "comment": "x", "created_by": "bob"},
        headers=AUTH,
    )
    assert by_admin.json()["created_by"] == "bob"


def test_a_graph_change_records_the_key(keyed: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    client = keyed.client
    carol = make_key(client, "graph-sync", "config:write", owner="carol")
    caplog.set_level(logging.INFO)
    response = client.put(
        "/api/v1/services/graph",
        json={"services": [{"name": "a", "depends_on": ["b"]}, {"name": "b"}]},
        headers=bearer(carol),
    )
    assert response.status_code == 200, response.text
    [record] = [r for r in caplog.records if r.getMessage().startswith("service graph replaced")]
    assert record.by == "carol"  # type: ignore[attr-defined]
    assert record.client == "testclient"  # type: ignore[attr-defined]
