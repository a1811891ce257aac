"""Silences and maintenance windows through the API: lifecycle, matching, muting."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidents.db import utcnow
from tests.api.test_incidents import Pipeline, alert, recent
from tests.api.test_services_silences import SILENCES, silence
from tests.conftest import AUTH
from tests.factories import iso

# -- silences and maintenance windows ----------------------------------------------------------


def test_silence_lifecycle_create_list_read_expire(client: TestClient) -> None:
    created = silence(client, matchers='alertname="DiskFull", service=~"storage-.*"')
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["state"] == "active"
    assert first["matchers"] == ['alertname="DiskFull"', 'service=~"storage-.*"']
    assert first["created_by"] == "alice"
    as_list = silence(client, matchers=['severity="warning"', "team!=ml"])
    assert as_list.status_code == 201, as_list.text
    second = as_list.json()
    assert second["matchers"] == ['severity="warning"', 'team!="ml"']
    later = silence(
        client,
        matchers=["alertname=Later"],
        starts_at=iso(utcnow() + timedelta(hours=1)),
        ends_at=iso(utcnow() + timedelta(hours=2)),
    )
    assert later.status_code == 201, later.text
    assert later.json()["state"] == "pending"

    listed = client.get(SILENCES, headers=AUTH).json()
    assert {s["id"] for s in listed} == {first["id"], second["id"], later.json()["id"]}
    active = client.get(SILENCES, params={"state": "active"}, headers=AUTH).json()
    assert {s["id"] for s in active} == {first["id"], second["id"]}
    one = client.get(f"{SILENCES}/{first['id']}", headers=AUTH)
    assert one.status_code == 200
    assert one.json() == first

    expired = client.delete(f"{SILENCES}/{first['id']}", headers=AUTH)
    assert expired.status_code == 200, expired.text
    assert expired.json()["state"] == "expired"
    assert client.get(f"{SILENCES}/{first['id']}", headers=AUTH).json()["state"] == "expired"
    default = client.get(SILENCES, headers=AUTH).json()
    assert first["id"] not in {s["id"] for s in default}
    old = client.get(SILENCES, params={"state": "expired"}, headers=AUTH).json()
    assert [(s["id"], s["state"]) for s in old] == [(first["id"], "expired")]
    everything = client.get(SILENCES, params={"state": "all"}, headers=AUTH).json()
    assert len(everything) == 3
    # Expiring twice is harmless; an unknown id is 404.
    assert client.delete(f"{SILENCES}/{first['id']}", headers=AUTH).status_code == 200
    assert client.get(f"{SILENCES}/nope", headers=AUTH).status_code == 404
    assert client.delete(f"{SILENCES}/nope", headers=AUTH).status_code == 404


def test_expiring_a_pending_silence_expires_it(client: TestClient) -> None:
    created = silence(
        client,
        matchers=["alertname=Later"],
        starts_at=iso(utcnow() + timedelta(hours=1)),
        ends_at=iso(utcnow() + timedelta(hours=2)),
    )
    assert created.status_code == 201, created.text
    silence_id = created.json()["id"]
    expired = client.delete(f"{SILENCES}/{silence_id}", headers=AUTH)
    assert expired.status_code == 200
    assert expired.json()["state"] == "expired"
    assert client.get(SILENCES, headers=AUTH).json() == []
    old = client.get(SILENCES, params={"state": "expired"}, headers=AUTH).json()
    assert [s["id"] for s in old] == [silence_id]


def test_silence_times_without_a_zone_are_not_a_server_error(client: TestClient) -> None:
    ends = (utcnow() + timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
    response = silence(client, matchers=["alertname=A"], ends_at=ends.isoformat())
    # Taken as UTC (as stored times are), or refused naming the field; never a 500.
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:
        assert response.json()["ends_at"] == iso(ends.replace(tzinfo=utcnow().tzinfo))
        assert response.json()["state"] == "active"
    else:
        assert response.json()["field"] == "ends_at"


def test_silenced_alert_is_kept_but_opens_no_incident_until_the_silence_ends(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    # A short upkeep interval: the upkeep that un-mutes alerts runs within the test.
    pipe = Pipeline(client_for(db_url, pipeline={"upkeep_interval_seconds": 0.2}), db_url)
    try:
        pipe.load_graph()
        created = silence(pipe.client, matchers=['alertname="DiskFull"'])
        assert created.status_code == 201, created.text
        silence_id = created.json()["id"]
        [muted] = pipe.post(alert("storage-s3", "DiskFull", recent(5)))
        stored = pipe.alert_row(muted)
        assert stored["status"] == "firing"
        assert stored["silenced_by"] == [silence_id]
        assert pipe.incidents() == []

        # Another alert of the same service is not covered by this silence.
        [loud] = pipe.post(alert("storage-s3", "BucketErrors", recent(4)))
        [incident] = pipe.incidents()
        assert incident["alert_fingerprints"] == [loud]
        time.sleep(0.5)  # a few upkeep rounds: the silence still holds
        assert pipe.alert_row(muted)["silenced_by"] == [silence_id]
        assert pipe.incidents()[0]["alert_fingerprints"] == [loud]

        # Once the silence is expired, the alert that still fires joins like any other.
        assert pipe.client.delete(f"{SILENCES}/{silence_id}", headers=AUTH).status_code == 200
        [fresh] = pipe.post(alert("storage-s3", "DiskFull", recent(2), instance="s3-b"))
        assert pipe.alert_row(fresh)["silenced_by"] == []
        deadline = time.monotonic() + 10
        while pipe.alert_row(muted)["silenced_by"] and time.monotonic() < deadline:
            time.sleep(0.05)
        pipe.wait()
        assert pipe.alert_row(muted)["silenced_by"] == []
        [incident] = pipe.incidents()
        assert sorted(incident["alert_fingerprints"]) == sorted([loud, fresh, muted])
    finally:
        pipe.close()


def test_maintenance_window_mutes_every_alert_of_its_service(pipe: Pipeline) -> None:
    pipe.load_graph()
    window = silence(pipe.client, service="database-postgres", comment="upgrade to 16")
    assert window.status_code == 201, window.text
    assert window.json()["matchers"] == []
    assert window.json()["service"] == "database-postgres"

    db_alerts = pipe.post(
        alert("database-postgres", "PostgresDown", recent(5), "P0"),
        alert("database-postgres", "ReplicationLag", recent(5), "P2"),
    )
    for fingerprint in db_alerts:
        assert pipe.alert_row(fingerprint)["silenced_by"] == [window.json()["id"]]
    assert pipe.incidents() == []
    [other] = pipe.post(alert("user-service", "LoginErrors", recent(4)))
    [incident] = pipe.incidents()
    assert incident["alert_fingerprints"] == [other]
    service = pipe.client.get("/api/v1/services/database-postgres", headers=AUTH).json()
    assert [w["id"] for w in service["maintenance_windows"]] == [window.json()["id"]]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"matchers": ["alertname"]}, "matchers[0]", "expected one of"),
        ({"matchers": ['a="1"', "b~x"]}, "matchers[1]", "expected one of"),
        ({"matchers": 'alertname=~"(unclosed"'}, "matchers[0]", "regular expression"),
        (
            {
                "matchers": ["alertname=A"],
                "starts_at": "2031-01-02T00:00:00Z",
                "ends_at": "2031-01-01T00:00:00Z",
            },
            "ends_at",
            "after starts_at",
        ),
        ({"matchers": ["alertname=A"], "ends_at": "2020-01-01T00:00:00Z"}, "ends_at", "after"),
        ({"service": "no-such-service"}, "service", "no-such-service"),
        ({"matchers": ["alertname=A"], "created_by": ""}, "created_by", "at least 1"),
        ({"matchers": []}, "matchers", "matcher"),
        ({"matchers": ['team=~".*"', 'env=""']}, "matchers", "mute everything"),
        ({"matchers": ["alertname=A"], "ends_at": None}, "ends_at", "required"),
        ({"matchers": ["alertname=A"], "until": "tomorrow"}, "until", "not permitted"),
    ],
)
def test_bad_silence_is_422_naming_the_field(
    pipe: Pipeline, fields: dict[str, Any], field: str, words: str
) -> None:
    pipe.load_graph()
    response = silence(pipe.client, **fields)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field
    assert words.lower() in error["message"].lower()
    assert pipe.client.get(SILENCES, params={"state": "all"}, headers=AUTH).json() == []
