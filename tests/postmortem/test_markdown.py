"""The Markdown postmortem of a real cascade: times, causes with their reasons, the
Mermaid picture marking the root cause, the full timeline in order, and escaping."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from tests.api.incident_pipe import alert, recent
from tests.conftest import AUTH
from tests.postmortem.cascade import HOSTILE, Cascade


def markdown(c: Cascade, incident_id: int | None = None) -> str:
    response = c.get(f"/api/v1/incidents/{incident_id or c.incident_id}/postmortem")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    return response.text


def section(text: str, heading: str) -> str:
    """The body of one `## heading` section."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, heading
    return match.group(1)


def table_rows(body: str) -> list[list[str]]:
    rows = [line for line in body.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]


def node_ids(mermaid: str) -> dict[str, tuple[str, str]]:
    """Service name -> (node id, the words under it)."""
    found = re.findall(r'^\s+(s\d+)\["([^"<]+)(?:<br/>([^"]*))?"\]$', mermaid, re.M)
    return {name: (node, words) for node, name, words in found}


def classes(mermaid: str) -> dict[str, str]:
    out = {}
    for members, role in re.findall(r"^\s+class (\S+) (\w+)$", mermaid, re.M):
        out.update({m: role for m in members.split(",")})
    return out


def test_the_format_defaults_to_markdown_with_title_severity_status_and_duration(
    cascade: Cascade,
) -> None:
    text = markdown(cascade)
    explicit = cascade.get(f"/api/v1/incidents/{cascade.incident_id}/postmortem", format="md")
    assert explicit.text.split("_Generated")[0] == text.split("_Generated")[0]
    detail = cascade.incident()
    assert text.startswith(f"# Postmortem: incident {cascade.incident_id}: PostgresDown on")
    [header] = table_rows(text.split("## Times")[0])
    assert header[:3] == ["P1", "resolved", "resolved"]
    opened = datetime.fromisoformat(detail["opened_at"])
    resolved = datetime.fromisoformat(detail["resolved_at"])
    minutes, seconds = divmod(round((resolved - opened).total_seconds()), 60)
    assert header[3] == f"{minutes} min {seconds} s"


def test_times_give_detection_page_ack_resolve_and_the_spans(cascade: Cascade) -> None:
    detail = cascade.incident()
    rows = {r[0]: r[1:] for r in table_rows(section(markdown(cascade), "Times"))}
    opened = datetime.fromisoformat(detail["opened_at"])
    acked = datetime.fromisoformat(detail["acknowledged_at"])
    assert rows["Detection (earliest alert)"][0] == opened.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert rows["Acknowledged"] == [acked.strftime("%Y-%m-%d %H:%M:%S UTC"), "alice"]
    assert rows["Resolved"][1] == "alice"
    assert rows["First page"][0] != "-"
    minutes, seconds = divmod(round((acked - opened).total_seconds()), 60)
    assert rows["Time to acknowledge"][1] == f"{minutes} min {seconds} s"


def test_causes_come_ranked_with_reasons_and_each_alert_says_why_it_joined(
    cascade: Cascade,
) -> None:
    text = markdown(cascade)
    causes = table_rows(section(text, "Root-cause candidates"))
    assert causes[0][:3] == ["1", "database-postgres", "alerting"]
    assert "nothing else alerting lies below it" in causes[0][3]
    explained = cascade.get(f"/api/v1/incidents/{cascade.incident_id}/explain").json()
    joined = {r[0]: r[6] for r in table_rows(section(text, "Why each alert joined"))}
    for member in explained["alerts"]:
        name = member["alertname"]
        assert joined[name] == member["reason"].replace("_", "\\_"), name
    assert joined["AnalysisErrors"].startswith("ai-analysis-service depends on database-postgres")
    related = section(text, "Possibly related incidents")
    assert (
        f"Incident {cascade.related_id} (open): BedrockThrottling on ai-models-bedrock" in related
    )
    assert "AnalysisErrors" in related
    services = section(text, "Services affected")
    assert "- database-postgres" in services and "- api-gateway" in services


def test_the_mermaid_graph_marks_root_cause_alerting_services_and_blast_radius(
    cascade: Cascade,
) -> None:
    body = section(markdown(cascade), "Dependency graph")
    mermaid = body.split("```mermaid\n")[1].split("```")[0]
    assert mermaid.startswith("flowchart TD")
    nodes = node_ids(mermaid)
    role = classes(mermaid)
    db, words = nodes["database-postgres"]
    assert role[db] == "root_cause" and words == "ROOT CAUSE, alerting"
    assert "classDef root_cause" in mermaid
    assert role[nodes["api-gateway"][0]] == "affected"
    assert role[nodes["web-frontend"][0]] == "blast_radius"
    assert nodes["web-frontend"][1] == "blast radius"
    # Edges point from a service to what it depends on.
    assert f"{nodes['user-service'][0]} --> {db}" in mermaid
    assert "Root cause**: the most likely cause" in body


def test_the_timeline_is_complete_and_in_order(cascade: Cascade) -> None:
    rows = table_rows(section(markdown(cascade), "Timeline"))
    times = [r[0] for r in rows]
    assert times == sorted(times)
    kinds = [r[1] for r in rows]
    first = {k: kinds.index(k) for k in reversed(kinds)}
    assert first["alert\\_fired"] < first["opened"] < first["acknowledged"]
    assert first["opened"] < first["escalated"] < first["acknowledged"] < first["note"]
    assert first["note"] < first["playbook\\_run"] < first["resolved"]
    assert kinds.count("alert\\_fired") == 5
    ack = rows[first["acknowledged"]]
    assert ack[2] == "alice" and "looking at the primary" in ack[3]
    sent = [r[3] for r in rows if r[1] == "notification"]
    # The page and the escalation's email go out together, in either order.
    assert sorted(sent[:2]) == [
        "opened via console to stdout: sent",
        "opened via email to alice@example.com: sent",
    ]
    assert sent[2:] == ["resolved via console to stdout: sent"]
    step = rows[first["playbook\\_step"]]
    assert "step=promote" in step[4] and "result=HTTP 200" in step[4]


def test_notifications_playbooks_and_the_sections_for_people(cascade: Cascade) -> None:
    text = markdown(cascade)
    notifications = section(text, "Notifications")
    assert "### console (" in notifications and " sent)" in notifications
    assert table_rows(notifications)[0][:3] == ["opened", "stdout", "sent"]
    assert "### email (1 sent)" in notifications
    escalation = section(text, "Escalation")
    assert "policy db, level 1, round 1: alice: email alice@example.com" in escalation
    runs = section(text, "Playbook runs")
    assert "failover-postgres (run r-1): succeeded" in runs
    assert table_rows(runs)[0][1:5] == ["promote", "http", "succeeded", "HTTP 200"]
    for heading in ("Impact", "Root cause", "What went well", "What went badly", "Action items"):
        assert "_To be written by the incident commander._" in section(text, heading)
    assert "P1 incident affecting 5 service(s)" in section(text, "Impact")
    assert "Most likely cause, alerting: database-postgres" in section(text, "Root cause")
    assert "5 alerts were grouped into this one incident." in section(text, "What went well")


def test_markup_from_alerts_and_notes_is_escaped(cascade: Cascade) -> None:
    text = markdown(cascade)
    assert "<script" not in text
    assert "&lt;script&gt;alert('pm')&lt;/script&gt;" in text
    labels = {r[0]: r[7] for r in table_rows(section(text, "Why each alert joined"))}
    assert labels["FeedbackErrors"] == "note=&lt;script&gt;alert('pm')&lt;/script&gt;"
    assert HOSTILE.startswith("<script>")


def test_a_silent_database_is_drawn_as_the_inferred_root_cause(cascade: Cascade) -> None:
    t0 = recent(2)
    cascade.pipe.post(
        alert("user-service", "LoginLatency", t0),
        alert("feedback-service", "FeedbackLatency", t0 + timedelta(seconds=5)),
    )
    incident = next(
        i
        for i in cascade.pipe.live()
        if i["services"] == sorted(i["services"])
        and "user-service" in i["services"]
        and i["status"] == "open"
    )
    text = markdown(cascade, int(incident["id"]))
    causes = table_rows(section(text, "Root-cause candidates"))
    assert causes[0][:3] == ["1", "database-postgres", "inferred, no alert"]
    mermaid = section(text, "Dependency graph").split("```mermaid\n")[1]
    db, words = node_ids(mermaid)["database-postgres"]
    assert classes(mermaid)[db] == "root_cause" and words == "ROOT CAUSE, no alert"
    assert "Consider an alert on database-postgres" in section(text, "Action items")


def test_unknown_incident_is_404_and_unknown_format_422(cascade: Cascade) -> None:
    missing = cascade.get("/api/v1/incidents/999999/postmortem")
    assert missing.status_code == 404
    assert missing.json()["field"] == "incident_id"
    bad = cascade.get(f"/api/v1/incidents/{cascade.incident_id}/postmortem", format="xml")
    assert bad.status_code == 422
    assert bad.json()["field"] == "format"
    assert bad.json()["message"] == "format: unknown format 'xml'; use one of md, json, html"
    anonymous = cascade.client.get(f"/api/v1/incidents/{cascade.incident_id}/postmortem")
    assert anonymous.status_code == 401
    assert cascade.client.get("/api/v1/incidents/0/postmortem", headers=AUTH).status_code == 422


def test_an_incident_that_resolved_by_itself_says_so(cascade: Cascade) -> None:
    text = markdown(cascade, cascade.quiet_id)
    kinds = [r[1] for r in table_rows(section(text, "Timeline"))]
    assert kinds.index("alert\\_fired") < kinds.index("alert\\_resolved")
    assert kinds.index("alert\\_resolved") <= kinds.index("resolved")
    rows = {r[0]: r[1:] for r in table_rows(section(text, "Times"))}
    assert rows["Acknowledged"] == ["-", ""]
    assert rows["Resolved"][1] == "system"
    assert rows["Time to acknowledge"][1] == "-"
    assert "Nobody acknowledged it before it resolved." in section(text, "What went badly")
