"""The summary report over the cascade, on SQLite and PostgreSQL: counts, response
times, root causes, the noisiest alerts, the window, and bad parameters."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from incidents.api.queries.reports import span_stats
from incidents.api.reports import EXAMPLE, SummaryReport
from tests.postmortem.cascade import Cascade

SUMMARY = "/api/v1/reports/summary"


@pytest.fixture(scope="module")
def report(both_cascade: Cascade) -> dict[str, Any]:
    response = both_cascade.get(SUMMARY)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _seconds(incident: dict[str, Any], key: str) -> float:
    start = datetime.fromisoformat(incident["opened_at"])
    return (datetime.fromisoformat(incident[key]) - start).total_seconds()


def test_the_shape_is_exactly_the_documented_one(report: dict[str, Any]) -> None:
    assert set(report) == {
        "from",
        "to",
        "incidents",
        "time_to_acknowledge",
        "time_to_resolve",
        "top_root_causes",
        "noisiest_alerts",
    }
    assert set(report["incidents"]) == {"total", "by_severity", "by_service", "by_team"}
    assert set(report["incidents"]["by_severity"]) == {"P0", "P1", "P2", "P3"}
    assert set(report["time_to_acknowledge"]) == {"count", "mean_seconds", "p90_seconds"}
    assert set(report["noisiest_alerts"]) == {"most_fired", "paged_without_action"}
    start, end = (datetime.fromisoformat(report[k]) for k in ("from", "to"))
    assert end - start == timedelta(days=7)  # the default window


def test_counts_by_severity_service_and_team(report: dict[str, Any]) -> None:
    counts = report["incidents"]
    # The database cascade (P1), the throttled model (P2) and the cache blip (P2).
    assert counts["total"] == 3
    assert counts["by_severity"] == {"P0": 0, "P1": 1, "P2": 2, "P3": 0}
    by_service = {s["service"]: s["count"] for s in counts["by_service"]}
    assert by_service == {
        "database-postgres": 1,
        "ai-analysis-service": 1,
        "user-service": 1,
        "api-gateway": 1,
        "feedback-service": 1,
        "ai-models-bedrock": 1,
        "cache-redis": 1,
    }
    # Each incident counts once per team: ml owns two services of two incidents.
    assert counts["by_team"][:2] == [{"team": "ml", "count": 2}, {"team": "platform", "count": 2}]
    assert {"team": "data-platform", "count": 1} in counts["by_team"]


def test_response_times_are_mean_and_p90_over_the_incidents_that_have_them(
    both_cascade: Cascade, report: dict[str, Any]
) -> None:
    db = both_cascade.incident()
    cache = both_cascade.incident(both_cascade.quiet_id)
    tta = report["time_to_acknowledge"]
    assert tta["count"] == 1
    assert tta["mean_seconds"] == pytest.approx(_seconds(db, "acknowledged_at"), abs=0.01)
    assert tta["p90_seconds"] == tta["mean_seconds"]
    ttr = report["time_to_resolve"]
    spans = [_seconds(db, "resolved_at"), _seconds(cache, "resolved_at")]
    assert ttr["count"] == 2  # the throttled model is still open
    assert ttr["mean_seconds"] == pytest.approx(sum(spans) / 2, abs=0.01)
    assert ttr["p90_seconds"] == pytest.approx(max(spans), abs=0.01)


def test_root_causes_and_the_noisiest_alerts(report: dict[str, Any]) -> None:
    causes = {c["service"]: c["count"] for c in report["top_root_causes"]}
    assert causes == {"database-postgres": 1, "ai-models-bedrock": 1, "cache-redis": 1}
    fired = {
        (a["alertname"], a["service"]): a["fired"] for a in report["noisiest_alerts"]["most_fired"]
    }
    assert fired[("PostgresDown", "database-postgres")] == 1
    assert fired[("RedisDown", "cache-redis")] == 1
    assert len(fired) == 7
    # Only the cache blip paged and resolved by itself with nobody acting; the database
    # incident was acknowledged and resolved by alice, the model's is still open.
    assert report["noisiest_alerts"]["paged_without_action"] == [
        {"alertname": "RedisDown", "service": "cache-redis", "incidents": 1}
    ]


def test_the_window_is_from_inclusive_to_exclusive(both_cascade: Cascade) -> None:
    db = both_cascade.incident()
    opened = db["opened_at"]
    after = both_cascade.get(SUMMARY, **{"from": opened, "to": "2100-01-01T00:00:00Z"}).json()
    assert after["incidents"]["total"] == 3
    before = both_cascade.get(SUMMARY, **{"from": "2020-01-01T00:00:00Z", "to": opened}).json()
    assert before["incidents"]["total"] == 0
    assert before["time_to_resolve"] == {"count": 0, "mean_seconds": None, "p90_seconds": None}
    assert before["noisiest_alerts"] == {"most_fired": [], "paged_without_action": []}
    assert before["incidents"]["by_severity"] == {"P0": 0, "P1": 0, "P2": 0, "P3": 0}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01T00:00:00Z"}, "to"),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"since": "2026-01-01T00:00:00Z"}, "since"),
    ],
)
def test_bad_parameters_are_422_naming_them(
    both_cascade: Cascade, params: dict[str, str], field: str
) -> None:
    response = both_cascade.get(SUMMARY, **params)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["message"].startswith(f"{field}: ")


def test_p90_is_the_nearest_rank() -> None:
    assert span_stats([]) == {"count": 0, "mean_seconds": None, "p90_seconds": None}
    assert span_stats([7.0]) == {"count": 1, "mean_seconds": 7.0, "p90_seconds": 7.0}
    ten = span_stats([float(n) for n in range(10, 0, -1)])
    assert ten == {"count": 10, "mean_seconds": 5.5, "p90_seconds": 9.0}
    assert span_stats([float(n) for n in range(1, 12)])["p90_seconds"] == 10.0


def test_the_documented_example_has_the_shape_the_api_returns(
    both_cascade: Cascade, report: dict[str, Any]
) -> None:
    assert SummaryReport.model_validate(EXAMPLE).model_dump(by_alias=True, mode="json") == EXAMPLE
    assert set(EXAMPLE) == set(report)
    document = both_cascade.client.get("/openapi.json").json()
    ok = document["paths"][SUMMARY]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["example"] == EXAMPLE
    assert ok["schema"] == {"$ref": "#/components/schemas/SummaryReport"}
