"""A state change is never a duplicate, and a missing timestamp never rewrites a known one.

Run on SQLite and PostgreSQL: the two upsert statements must keep the same rule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi.testclient import TestClient

from incidents.config import IngestSettings
from incidents.db import create_db_engine
from incidents.ingest.adapters import parse_alertmanager, parse_generic
from incidents.ingest.store import Incoming, write_batch
from tests.api.test_ingest import T0, alerts, count_rows, post
from tests.factories import GO_ZERO, am_alert, am_payload, iso

GENERIC = "/api/v1/alerts"


def _status(client: TestClient) -> str:
    [stored] = alerts(client)
    status: str = stored["status"]
    return status


def test_generic_refire_after_resolve_is_applied(client: TestClient) -> None:
    labels = {"alertname": "Refire", "service": "x"}
    fire = [{"labels": labels}]
    resolve = [{"labels": labels, "status": "resolved"}]
    assert post(client, fire, path=GENERIC).json()["status"] == "accepted"
    assert post(client, resolve, path=GENERIC).json()["status"] == "accepted"
    assert _status(client) == "resolved"
    again = post(client, fire, path=GENERIC)  # the same bytes as the first, in the window
    assert again.json()["status"] == "accepted", again.text
    [stored] = alerts(client)
    assert stored["status"] == "firing"
    assert stored["ends_at"] is None
    assert stored["receive_count"] == 3


def test_alertmanager_refire_without_times_is_applied(client: TestClient) -> None:
    labels = {"alertname": "NoTimes", "service": "x"}
    fire = am_alert(labels)
    fire["startsAt"] = GO_ZERO  # a sender that knows no start
    resolve = dict(fire, status="resolved")
    assert post(client, am_payload([fire])).json()["status"] == "accepted"
    assert post(client, am_payload([resolve])).json()["status"] == "accepted"
    assert _status(client) == "resolved"
    assert post(client, am_payload([fire])).json()["status"] == "accepted"
    assert _status(client) == "firing"


def test_ha_pair_without_start_counts_once(client: TestClient) -> None:
    # The key covers the times as sent, not the receipt time that stands in for them.
    fire = am_alert({"alertname": "PairNoStart", "service": "x"})
    fire["startsAt"] = GO_ZERO
    body = am_payload([fire])
    assert post(client, body).json()["status"] == "accepted"
    twin = post(client, {**body, "externalURL": "http://alertmanager-2.example:9093"})
    assert twin.json()["status"] == "duplicate"
    [stored] = alerts(client)
    assert stored["receive_count"] == 1


def test_ha_pair_counts_each_notification_once(client: TestClient, db_url: str) -> None:
    labels = {"alertname": "Pair", "service": "x"}
    fire = am_payload([am_alert(labels, starts_at=T0)])
    resolve = am_payload(
        [am_alert(labels, status="resolved", starts_at=T0, ends_at=T0 + timedelta(minutes=4))]
    )
    twin = {"externalURL": "http://alertmanager-2.example:9093"}
    answers = [
        post(client, fire).json()["status"],
        post(client, {**fire, **twin}).json()["status"],
        post(client, resolve).json()["status"],
        post(client, {**resolve, **twin}).json()["status"],
        # The second member's copy of the firing notification, delayed past the resolve.
        post(client, {**fire, **twin}).json()["status"],
    ]
    assert answers == ["accepted", "duplicate", "accepted", "duplicate", "duplicate"]
    [stored] = alerts(client)
    assert stored["status"] == "resolved"
    assert stored["receive_count"] == 2
    assert count_rows(db_url, "pipeline_jobs") == 2


def _incoming(body: Any, parser: Any, now: datetime) -> Incoming:
    data = orjson.dumps(body)
    return Incoming(parsed=parser(data, IngestSettings(), now), body=data, request_id=None)


def test_state_change_within_one_batch_is_applied(db_url: str) -> None:
    labels = {"alertname": "Batch", "service": "x"}
    now = datetime.now(UTC)
    batch = [
        _incoming([{"labels": labels}], parse_generic, now),
        _incoming([{"labels": labels, "status": "resolved"}], parse_generic, now + timedelta(1)),
        _incoming([{"labels": labels}], parse_generic, now + timedelta(2)),
        _incoming([{"labels": labels}], parse_generic, now + timedelta(3)),
    ]
    engine = create_db_engine(db_url)
    try:
        with engine.begin() as conn:
            results = write_batch(conn, batch, now, 300.0)
    finally:
        engine.dispose()
    assert [r.duplicate for r in results] == [False, False, False, True]
    assert count_rows(db_url, "alerts") == 1


def test_resolve_without_start_keeps_the_start(client: TestClient) -> None:
    labels = {"alertname": "KeepStart", "service": "x"}
    fire = [{"labels": labels, "starts_at": iso(T0)}]
    assert post(client, fire, path=GENERIC).status_code == 200
    end = T0 + timedelta(minutes=9)
    resolve = [{"labels": labels, "status": "resolved", "ends_at": iso(end)}]
    assert post(client, resolve, path=GENERIC).status_code == 200
    [stored] = alerts(client)
    assert stored["status"] == "resolved"
    assert stored["starts_at"] == iso(T0)
    assert stored["ends_at"] == iso(end)
    # Without any time at all the start stays too, and the end is the time of receipt.
    labels2 = {"alertname": "KeepStart2", "service": "x"}
    post(client, [{"labels": labels2, "starts_at": iso(T0)}], path=GENERIC)
    post(client, [{"labels": labels2, "status": "resolved"}], path=GENERIC)
    [second] = alerts(client, filter='alertname="KeepStart2"')
    assert second["starts_at"] == iso(T0)
    assert second["ends_at"] > iso(T0)


def test_resolve_without_start_in_the_same_body_keeps_the_start(client: TestClient) -> None:
    labels = {"alertname": "SameBody", "service": "x"}
    body = [{"labels": labels, "startsAt": iso(T0)}, {"labels": labels, "status": "resolved"}]
    assert post(client, body, path=GENERIC).status_code == 200
    [stored] = alerts(client)
    assert stored["status"] == "resolved"
    assert stored["starts_at"] == iso(T0)


def test_alertmanager_resolve_with_zero_start_keeps_the_start(client: TestClient) -> None:
    labels = {"alertname": "ZeroStart", "service": "x"}
    post(client, am_payload([am_alert(labels, starts_at=T0)]))
    resolved = am_alert(labels, status="resolved", ends_at=T0 + timedelta(minutes=2))
    resolved["startsAt"] = GO_ZERO
    post(client, am_payload([resolved]))
    [stored] = alerts(client)
    assert stored["status"] == "resolved"
    assert stored["starts_at"] == iso(T0)


def test_new_episode_without_start_starts_at_receipt(client: TestClient) -> None:
    labels = {"alertname": "Episode", "service": "x"}
    post(client, [{"labels": labels, "starts_at": iso(T0)}], path=GENERIC)
    post(client, [{"labels": labels, "status": "resolved", "ends_at": iso(T0)}], path=GENERIC)
    before = iso(datetime.now(UTC) - timedelta(seconds=1))
    post(client, [{"labels": labels}], path=GENERIC)
    [stored] = alerts(client)
    assert stored["status"] == "firing"
    assert stored["starts_at"] >= before


def test_resolve_of_an_unknown_alert_without_start_starts_at_its_end(client: TestClient) -> None:
    labels = {"alertname": "OnlyResolved", "service": "x"}
    end = T0 + timedelta(minutes=3)
    post(client, [{"labels": labels, "status": "resolved", "ends_at": iso(end)}], path=GENERIC)
    [stored] = alerts(client)
    assert stored["starts_at"] == iso(end)


def test_generic_accepts_camel_case_times_and_url(client: TestClient) -> None:
    labels = {"alertname": "Camel", "service": "x"}
    end = T0 + timedelta(minutes=5)
    body = {
        "alerts": [
            {
                "labels": labels,
                "status": "resolved",
                "startsAt": iso(T0),
                "endsAt": iso(end),
                "generatorURL": "http://source.example/x",
            }
        ]
    }
    response = post(client, body, path=GENERIC)
    assert response.status_code == 200, response.text
    [stored] = alerts(client)
    assert stored["starts_at"] == iso(T0)
    assert stored["ends_at"] == iso(end)
    assert stored["generator_url"] == "http://source.example/x"
    assert stored["extra"] == {}


def test_generic_refuses_both_spellings_of_a_field(client: TestClient) -> None:
    body = [{"labels": {"a": "b"}, "starts_at": iso(T0), "startsAt": iso(T0)}]
    response = post(client, body, path=GENERIC)
    assert response.status_code == 422
    assert response.json()["field"] == "[0].startsAt"
    assert "starts_at" in response.json()["message"]
    response = post(client, [{"labels": {"a": "b"}, "endsAt": "soon"}], path=GENERIC)
    assert response.status_code == 422
    assert response.json()["field"] == "[0].endsAt"


def test_generic_schema_describes_every_field_with_an_example() -> None:
    from incidents.ingest.schemas import GenericAlert, GenericEnvelope

    schema = GenericAlert.model_json_schema()
    assert schema["examples"]
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
    assert "startsAt" in schema["properties"]["starts_at"]["description"]
    assert GenericEnvelope.model_json_schema()["examples"]
    # The example is itself a valid body.
    parsed = parse_generic(orjson.dumps(schema["examples"]), IngestSettings(), T0)
    assert parsed.alerts[0].starts_at == T0


def test_alertmanager_parse_keeps_the_dedup_key_stable() -> None:
    alert = am_alert({"alertname": "Key"}, starts_at=T0)
    first = parse_alertmanager(orjson.dumps(am_payload([alert])), IngestSettings(), T0)
    later = parse_alertmanager(
        orjson.dumps(am_payload([alert])), IngestSettings(), T0 + timedelta(1)
    )
    assert first.dedup_key == later.dedup_key
