"""An incident whose severity rises while its opening page is held pages once, at the new
severity, to the receivers the routes pick for that severity (not those of the old one)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.api.incident_pipe import Pipeline, alert, recent

ROUTING = {
    "receivers": [
        {"name": "critical", "webhook": ["http://127.0.0.1:9/critical"]},
        {"name": "warning", "webhook": ["http://127.0.0.1:9/warning"]},
    ],
    "route": {
        "receiver": "warning",
        "routes": [{"matchers": ['severity="P0"'], "receiver": "critical"}],
    },
}


def test_a_p0_joining_a_held_p2_opening_pages_the_p0_route_once(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(db_url, routing=ROUTING, correlation={"open_hold_seconds": 60})
    pipe = Pipeline(client, db_url)
    try:
        pipe.load_graph()
        pipe.post(alert("user-service", "Slow", recent(2), "P2"))
        pipe.post(alert("database-postgres", "DatabaseDown", recent(1), "P0"))
        (incident,) = pipe.incidents()
        assert incident["severity"] == "P0"
        with pipe.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT event, receiver, status, not_before FROM notifications")
            ).all()
        assert [(r[0], r[1], r[2]) for r in rows] == [("opened", "critical", "pending")]
        # Still held: it goes out when the first opening's hold ends, not before.
        assert rows[0][3] is not None
    finally:
        pipe.close()
