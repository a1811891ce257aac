"""Label values longer than the database's service columns still reach an incident."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.test_incidents import Pipeline, recent
from tests.factories import am_alert


@pytest.fixture
def pipe(client: TestClient, db_url: str) -> Iterator[Pipeline]:
    p = Pipeline(client, db_url)
    yield p
    p.close()


def test_an_unlabelled_alert_with_a_very_long_name_opens_its_incident(pipe: Pipeline) -> None:
    # Without a service label the graph node is "unknown:<alertname>"; on PostgreSQL a
    # name past 247 characters used to fail the pipeline job on every retry.
    long_a, long_b = "A" * 300 + "x", "A" * 300 + "y"
    pipe.post(
        am_alert({"alertname": long_a, "severity": "critical"}, starts_at=recent(2)),
        am_alert({"alertname": long_b, "severity": "critical"}, starts_at=recent(2)),
    )
    incidents = pipe.live()
    assert len(incidents) == 2, incidents
    services = [s for incident in incidents for s in incident["services"]]
    assert len(services) == 2 and all(len(s) <= 255 for s in services), services
    assert len(set(services)) == 2
