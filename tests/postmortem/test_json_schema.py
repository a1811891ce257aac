"""The JSON postmortem validates against its published JSON Schema, on SQLite and on
PostgreSQL; the schema is strict enough to catch drift and documented field by field."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import jsonschema
import pytest

from incidents.postmortem.schema import POSTMORTEM_SCHEMA
from tests.postmortem.cascade import Cascade

SCHEMA_URL = "/api/v1/schemas/postmortem.json"


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused everywhere: the builder must add nothing
    the schema does not document (the published one lets consumers ignore additions)."""
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    return out


@pytest.fixture(scope="module")
def document(both_cascade: Cascade) -> dict[str, Any]:
    response = both_cascade.get(
        f"/api/v1/incidents/{both_cascade.incident_id}/postmortem", format="json"
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def schema(both_cascade: Cascade) -> dict[str, Any]:
    response = both_cascade.get(SCHEMA_URL)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_served_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == POSTMORTEM_SCHEMA
    assert schema["properties"]["schema_version"] == {
        "const": 1,
        "description": "The schema's version: 1.",
    }


def test_the_postmortem_validates_against_it_strictly(
    document: dict[str, Any], schema: dict[str, Any]
) -> None:
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
        document
    )
    jsonschema.Draft202012Validator(strict(schema)).validate(document)
    assert document["schema_version"] == 1


def test_the_strict_check_catches_an_undocumented_field(
    document: dict[str, Any], schema: dict[str, Any]
) -> None:
    drifted = copy.deepcopy(document)
    drifted["times"]["time_to_mitigate_seconds"] = 3.0
    with pytest.raises(jsonschema.ValidationError, match="time_to_mitigate_seconds"):
        jsonschema.Draft202012Validator(strict(schema)).validate(drifted)
    jsonschema.Draft202012Validator(schema).validate(drifted)  # consumers may ignore it
    broken = copy.deepcopy(document)
    del broken["timeline"][0]["at"]
    with pytest.raises(jsonschema.ValidationError, match="'at' is a required property"):
        jsonschema.Draft202012Validator(schema).validate(broken)


def test_the_document_says_what_the_incident_api_says(
    both_cascade: Cascade, document: dict[str, Any]
) -> None:
    incident = both_cascade.incident()
    assert document["incident"]["id"] == both_cascade.incident_id
    assert document["incident"]["title"] == incident["title"]
    assert document["incident"]["services"] == incident["services"]
    assert [c["service"] for c in document["root_causes"]] == incident["root_cause_candidates"]
    assert document["blast_radius"] == incident["blast_radius"]
    times = document["times"]
    opened = datetime.fromisoformat(incident["opened_at"])
    acked = datetime.fromisoformat(incident["acknowledged_at"])
    assert datetime.fromisoformat(times["detected_at"]) == opened
    assert times["time_to_acknowledge_seconds"] == pytest.approx((acked - opened).total_seconds())
    assert times["acknowledged_by"] == "alice" and times["resolved_by"] == "alice"
    assert times["ongoing"] is False
    [related] = document["possibly_related"]
    assert related["id"] == both_cascade.related_id and related["alerts"] == ["AnalysisErrors"]


def test_the_timeline_is_ordered_and_holds_every_kind_of_event(document: dict[str, Any]) -> None:
    timeline = document["timeline"]
    times = [datetime.fromisoformat(e["at"]) for e in timeline]
    assert times == sorted(times)
    kinds = {e["kind"] for e in timeline}
    assert {"alert_fired", "opened", "acknowledged", "note", "resolved", "notification"} <= kinds
    assert {"playbook_run", "playbook_step", "escalated"} <= kinds
    [run] = document["playbook_runs"]
    assert run["playbook"] == "failover-postgres" and run["status"] == "succeeded"
    assert [s["step"] for s in run["steps"]] == ["promote"]
    channels = {c["channel"]: c for c in document["notifications"]}
    assert set(channels) == {"console", "email"}
    assert channels["console"]["counts"]["sent"] >= 2
    [emailed] = channels["email"]["deliveries"]
    assert (emailed["target"], emailed["status"]) == ("alice@example.com", "sent")
    [step] = document["escalation"]
    assert (step["policy"], step["level"], step["round"]) == ("db", 1, 1)
    assert step["paged"] == ["alice: email alice@example.com"]
    graph = document["graph"]
    roles = {n["service"]: n["role"] for n in graph["nodes"]}
    assert roles["database-postgres"] == "root_cause"
    assert roles["web-frontend"] == "blast_radius"
    assert {"source": "user-service", "target": "database-postgres"} in graph["edges"]
    assert [s["key"] for s in document["sections"]] == [
        "impact",
        "root_cause",
        "went_well",
        "went_badly",
        "action_items",
    ]


def test_the_openapi_document_describes_all_three_formats(both_cascade: Cascade) -> None:
    document = both_cascade.client.get("/openapi.json").json()
    operation = document["paths"]["/api/v1/incidents/{incident_id}/postmortem"]["get"]
    content = operation["responses"]["200"]["content"]
    assert set(content) == {"text/markdown", "text/html", "application/json"}
    assert content["application/json"]["schema"]["properties"]["schema_version"]["const"] == 1
    assert "$ref" not in str(content["application/json"]["schema"])
    [fmt] = [p for p in operation["parameters"] if p["name"] == "format"]
    assert fmt["schema"]["enum"] == ["md", "json", "html"] and fmt["schema"]["default"] == "md"
    assert both_cascade.client.get(SCHEMA_URL).status_code == 401


def test_an_open_incident_exports_as_ongoing(both_cascade: Cascade, schema: dict[str, Any]) -> None:
    response = both_cascade.get(
        f"/api/v1/incidents/{both_cascade.related_id}/postmortem", format="json"
    )
    assert response.status_code == 200, response.text
    document = response.json()
    jsonschema.Draft202012Validator(strict(schema)).validate(document)
    times = document["times"]
    assert times["ongoing"] is True and times["resolved_at"] is None
    assert times["time_to_resolve_seconds"] is None and times["duration_seconds"] > 0
    assert document["incident"]["status"] == "open"
    assert "Ongoing for" in document["sections"][0]["prefill"][1]
