"""The config file's `heartbeats:` section at start-up: applied when it changed since it
was last applied, so a restart resets no clock and keeps what the API replaced since."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import AUTH
from tests.heartbeats.conftest import BACKUP, WATCHDOG, FakeClock


def _read(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/v1/heartbeats", headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_section_applies_once_per_change(
    db_url: str, client_for: Callable[..., TestClient], fake_clock: FakeClock
) -> None:
    first = _read(client_for(db_url, heartbeats=[WATCHDOG]))
    assert first["version"] == 1
    assert [h["name"] for h in first["heartbeats"]] == ["alertmanager"]
    [waiting] = first["status"]
    assert waiting["state"] == "waiting"

    # A restart with the same section changes nothing, not even the clock.
    fake_clock.advance(minutes=3)
    again = client_for(db_url, heartbeats=[dict(WATCHDOG)])
    assert _read(again)["version"] == 1
    assert _read(again)["status"][0]["expires_at"] == waiting["expires_at"]

    # What the API replaced stays over a restart with the unchanged section...
    put = again.put("/api/v1/heartbeats", json={"heartbeats": [WATCHDOG, BACKUP]}, headers=AUTH)
    assert put.status_code == 200, put.text
    kept = _read(client_for(db_url, heartbeats=[WATCHDOG]))
    assert kept["version"] == 2 and len(kept["heartbeats"]) == 2
    # ... and without one.
    assert _read(client_for(db_url))["version"] == 2

    # An edited section applies.
    edited = _read(client_for(db_url, heartbeats=[{**WATCHDOG, "grace": "9m"}]))
    assert edited["version"] == 3
    assert [(h["name"], h["grace"]) for h in edited["heartbeats"]] == [("alertmanager", "9m")]
    # An empty section removes them all.
    assert _read(client_for(db_url, heartbeats=[]))["heartbeats"] == []
