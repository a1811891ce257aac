"""Bad input gets a 4xx that names what was wrong; trouble on our side gets 503."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.db import create_db_engine
from tests.conftest import AUTH
from tests.factories import am_alert, am_payload

WEBHOOK = "/api/v1/alerts/alertmanager"


def _good() -> dict[str, Any]:
    return am_payload([am_alert({"alertname": "A", "service": "x"})])


def _without(key: str) -> dict[str, Any]:
    body = _good()
    del body[key]
    return body


def _alert_with(**changes: Any) -> dict[str, Any]:
    body = _good()
    body["alerts"][0].update(changes)
    return body


BIG = b"123456789012345678901234567890"  # above 2**64: orjson cannot write it


def _raw_alert_with(value: bytes, **changes: Any) -> bytes:
    """A body whose alert carries `value` (raw JSON text) where changes say "RAW"."""
    return orjson.dumps(_alert_with(**changes)).replace(b'"RAW"', value)


CASES: list[tuple[str, bytes, int, str]] = [
    ("malformed json", b'{"version": "4", "alerts": [', 400, "body"),
    ("not utf-8", b'{"version": "\xff\xfe"}', 400, "body"),
    ("empty body", b"", 400, "body"),
    ("json but not an object", b"[1, 2]", 422, "body"),
    ("missing alerts", orjson.dumps(_without("alerts")), 422, "alerts"),
    ("missing receiver", orjson.dumps(_without("receiver")), 422, "receiver"),
    ("wrong version", orjson.dumps({**_good(), "version": "3"}), 422, "version"),
    ("alerts not a list", orjson.dumps({**_good(), "alerts": {"a": 1}}), 422, "alerts"),
    ("bad status", orjson.dumps(_alert_with(status="burning")), 422, "alerts[0].status"),
    ("bad time", orjson.dumps(_alert_with(startsAt="yesterday")), 422, "alerts[0].startsAt"),
    ("label not a string", orjson.dumps(_alert_with(labels={"a": 1})), 422, "alerts[0].labels.a"),
    ("no labels", orjson.dumps(_alert_with(labels={})), 422, "alerts[0].labels"),
    (
        "nul character",
        orjson.dumps(_alert_with(annotations={"summary": "a\x00b"})),
        422,
        "alerts[0].annotations.summary",
    ),
    (
        "year 9999 with a negative offset",
        orjson.dumps(_alert_with(startsAt="9999-12-31T23:00:00-05:00")),
        422,
        "alerts[0].startsAt",
    ),
    (
        "end after the year 9998",
        orjson.dumps(_alert_with(status="resolved", endsAt="9999-06-01T00:00:00Z")),
        422,
        "alerts[0].endsAt",
    ),
    ("huge integer in an extra field", _raw_alert_with(BIG, big="RAW"), 422, "alerts[0].big"),
    (
        "huge integer deep in an extra field",
        _raw_alert_with(b'{"n": [1, ' + BIG + b"]}", meta="RAW"),
        422,
        "alerts[0].meta.n[1]",
    ),
    (
        "huge integer in annotations",
        _raw_alert_with(BIG, annotations={"x": "RAW"}),
        422,
        "alerts[0].annotations.x",
    ),
    ("float beyond double", _raw_alert_with(b"1e400", ratio="RAW"), 422, "alerts[0].ratio"),
    ("NaN", _raw_alert_with(b"NaN", ratio="RAW"), 422, "alerts[0].ratio"),
    ("-Infinity", _raw_alert_with(b"-Infinity", ratio="RAW"), 422, "alerts[0].ratio"),
    (
        "lone surrogate in a label value",
        _raw_alert_with(b'"\\ud800"', labels={"alertname": "RAW"}),
        400,
        "body",
    ),
    (
        "lone surrogate in an annotation name",
        orjson.dumps(_alert_with(annotations={"SUR": "x"})).replace(b"SUR", b"\\udc00"),
        400,
        "body",
    ),
    (
        "nesting deeper than the parser allows",
        _raw_alert_with(b"[" * 5000 + b"]" * 5000, deep="RAW"),
        400,
        "body",
    ),
    ("empty label name", orjson.dumps(_alert_with(labels={"": "x"})), 422, "alerts[0].labels"),
    (
        "nul in a label name",
        orjson.dumps(_alert_with(labels={"a\x00b": "x"})),
        422,
        "alerts[0].labels.'a\\x00b'",
    ),
    (
        "nul in a label value",
        orjson.dumps(_alert_with(labels={"alertname": "a\x00b"})),
        422,
        "alerts[0].labels.alertname",
    ),
    (
        "escaped \\u0000 text next to NaN",
        _raw_alert_with(b"NaN", ratio="RAW", annotations={"path": "C:\\u0000"}),
        422,
        "alerts[0].ratio",
    ),
    (
        "nul in an extra field",
        orjson.dumps(_alert_with(note={"deep": ["\x00"]})),
        422,
        "alerts[0].note.deep[0]",
    ),
    (
        "negative truncated",
        orjson.dumps({**_good(), "truncatedAlerts": -1}),
        422,
        "truncatedAlerts",
    ),
]


@pytest.mark.parametrize(("name", "body", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_alertmanager_body_names_the_field(
    client: TestClient, db_url: str, name: str, body: bytes, status: int, field: str
) -> None:
    response = client.post(WEBHOOK, content=body, headers=AUTH)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["field"] == field, payload
    assert field.split("[")[0].split(".")[0] in payload["message"] or field == "body"
    engine = create_db_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM webhook_deliveries")).scalar_one() == 0
    engine.dispose()


def test_label_names_alertmanager_accepts_are_stored(client: TestClient) -> None:
    # Alertmanager 0.28 takes UTF-8 names, and "__" names pass its validation: a 4xx
    # would make it drop the whole notification.
    labels = {"alertname": "Utf8", "service.name": "checkout", "__tenant": "a", "zone": ""}
    response = client.post(WEBHOOK, content=orjson.dumps(_alert_with(labels=labels)), headers=AUTH)
    assert response.status_code == 200, response.text
    [stored] = client.get("/api/v1/alerts", headers=AUTH).json()["items"]
    assert stored["labels"] == labels


def test_service_label_longer_than_the_column_is_stored(client: TestClient) -> None:
    # The derived service is a column of 255 characters; the labels keep the full value.
    long = "svc-" + "x" * 1000
    body = _alert_with(labels={"alertname": "Long", "service": long})
    response = client.post(WEBHOOK, content=orjson.dumps(body), headers=AUTH)
    assert response.status_code == 200, response.text
    [stored] = client.get("/api/v1/alerts", headers=AUTH).json()["items"]
    assert stored["labels"]["service"] == long
    assert stored["service"] == long[:255]


def test_escaped_backslash_u0000_is_text_not_nul(client: TestClient, db_url: str) -> None:
    # The JSON text "a\\u0000b" is the six characters \u0000 between a and b.
    body = orjson.dumps(_alert_with(annotations={"summary": "a\\u0000b"}))
    assert b"\\\\u0000" in body
    response = client.post(WEBHOOK, content=body, headers=AUTH)
    assert response.status_code == 200, response.text
    [stored] = client.get("/api/v1/alerts", headers=AUTH).json()["items"]
    assert stored["annotations"]["summary"] == "a\\u0000b"
    generic = client.post(
        "/api/v1/alerts",
        content=orjson.dumps([{"labels": {"path": "C:\\u0000"}}]),
        headers=AUTH,
    )
    assert generic.status_code == 200, generic.text


def test_generic_bad_input_names_the_field(client: TestClient) -> None:
    response = client.post(
        "/api/v1/alerts",
        content=orjson.dumps([{"labels": {"a": "b"}}, {"annotations": {}}]),
        headers=AUTH,
    )
    assert response.status_code == 422
    assert response.json()["field"] == "[1].labels"
    response = client.post(
        "/api/v1/alerts",
        content=orjson.dumps({"alerts": [{"labels": {"a": "b"}, "ends_at": "soon"}]}),
        headers=AUTH,
    )
    assert response.status_code == 422
    assert response.json()["field"] == "alerts[0].ends_at"


def test_body_over_the_limit_gets_413(
    sqlite_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(sqlite_url, ingest={"max_body_bytes": 1024})
    body = orjson.dumps(am_payload([am_alert({"alertname": "A", "pad": "x" * 2000})]))
    response = client.post(WEBHOOK, content=body, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["field"] == "body"
    assert "1024" in response.json()["message"]


def test_read_api_bad_parameters_are_422(client: TestClient) -> None:
    for params, field in [
        ({"status": "sleeping"}, "status"),
        ({"severity": "P9"}, "severity[0]"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "abc"}, "cursor"),
        ({"filter": 'alertname=~"("'}, "filter[0]"),
        ({"filter": "alertname"}, "filter[0]"),
    ]:
        response = client.get("/api/v1/alerts", params=params, headers=AUTH)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["field"] == field, (params, response.json())
    missing = client.get("/api/v1/alerts/ffff", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["field"] == "fingerprint"


def test_database_down_answers_503_with_retry_after(client_for: Callable[..., TestClient]) -> None:
    # Nothing listens on port 1: every connection attempt fails at once.
    client = client_for("postgresql://postgres@127.0.0.1:1/nowhere")
    body = orjson.dumps(_good())
    response = client.post(WEBHOOK, content=body, headers=AUTH)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert response.json()["error"] == "unavailable"
    listing = client.get("/api/v1/alerts", headers=AUTH)
    assert listing.status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["status"] == "down"
    assert client.get("/healthz").status_code == 200


@pytest.mark.postgres
def test_failure_mid_batch_writes_nothing_and_answers_503(
    pg_url: str, client_for: Callable[..., TestClient]
) -> None:
    # A trigger makes the database refuse one alert of the body, after others went in.
    engine = create_db_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
                BEGIN
                  IF NEW.labels->>'alertname' = 'Poison' THEN
                    RAISE EXCEPTION 'refused by test trigger';
                  END IF;
                  RETURN NEW;
                END $$ LANGUAGE plpgsql;
                CREATE TRIGGER refuse_poison BEFORE INSERT ON alerts
                  FOR EACH ROW EXECUTE FUNCTION refuse_poison();
                """
            )
        )
    try:
        client = client_for(pg_url)
        body = am_payload(
            [am_alert({"alertname": "Fine", "n": str(i)}) for i in range(5)]
            + [am_alert({"alertname": "Poison"})]
        )
        response = client.post(WEBHOOK, content=orjson.dumps(body), headers=AUTH)
        assert response.status_code == 503, response.text
        with engine.connect() as conn:
            for table in ("alerts", "webhook_deliveries", "pipeline_jobs", "delivery_keys"):
                count = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                assert count == 0, table
        # Once the database accepts it, the retry of the same body is stored in full.
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER refuse_poison ON alerts"))
        retry = client.post(WEBHOOK, content=orjson.dumps(body), headers=AUTH)
        assert retry.status_code == 200
        assert retry.json()["status"] == "accepted"
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one() == 6
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER IF EXISTS refuse_poison ON alerts"))
            conn.execute(sa.text("DROP FUNCTION IF EXISTS refuse_poison()"))
        engine.dispose()


def test_overloaded_writer_answers_503(
    sqlite_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(sqlite_url)
    committer = client.app.state.service.committer  # type: ignore[attr-defined]
    committer.pending = 10**9  # as if that many requests already waited for a commit
    try:
        response = client.post(WEBHOOK, content=orjson.dumps(_good()), headers=AUTH)
    finally:
        committer.pending = 0
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
