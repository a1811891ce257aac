"""Key presses on a paging call: 1 acknowledges, 2 resolves, 3 makes the next escalation
level due now; signed by Twilio, done as the user the call went to."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from incidents.db import make_session_factory, utcnow
from incidents.escalation import engine
from incidents.models import INCIDENTS
from tests.acting.stage import ALICE, BOB, STRANGER, Stage
from tests.notify.test_routing_stage import notifications, wait_until


def test_1_acknowledges(stage: Stage) -> None:
    iid = stage.page("database-postgres")
    response = stage.press(ALICE, iid, "1")
    assert response.status_code == 200, response.text
    assert "<Say>" in response.text and f"Acknowledged #{iid}" in response.text
    assert stage.state(iid)["acknowledged_by"] == "alice (via voice)"
    # Pressed again: the refusal is read out.
    assert "it is acknowledged" in stage.press(ALICE, iid, "1").text


def test_2_resolves(stage: Stage) -> None:
    iid = stage.page("database-postgres")
    assert f"Resolved #{iid}" in stage.press(BOB, iid, "2").text
    assert stage.state(iid)["state"] == "resolved"


def escalated(stage: Stage, incident_id: int) -> list[dict[str, Any]]:
    return [e for e in stage.state(incident_id)["timeline"] if e["kind"] == "escalated"]


def delivered(stage: Stage, incident_id: int) -> None:
    """Until the incident's notifications have gone out. A delivery writes rows that refer
    to the incident, and on PostgreSQL that row lock makes a sweep at that moment (`FOR
    UPDATE SKIP LOCKED`) pass the incident by, for the next sweep to take."""

    def done() -> bool:
        statuses = {n["status"] for n in notifications(stage.pipe, incident_id)}
        return not statuses & {"pending", "sending"}

    wait_until(f"incident {incident_id}'s notifications to go out", done, timeout=30)


def test_3_escalates_now(stage: Stage) -> None:
    iid = stage.page("database-postgres")
    delivered(stage, iid)
    engine.run_due(make_session_factory(stage.pipe.engine), utcnow())  # level 1, if due
    climbed = len(escalated(stage, iid))
    before = utcnow()
    response = stage.press(BOB, iid, "3")
    assert f"Escalated #{iid}" in response.text
    with stage.pipe.engine.connect() as conn:
        due = conn.execute(
            sa.select(INCIDENTS.c.escalation_due_at).where(INCIDENTS.c.id == iid)
        ).scalar_one()
    # Level 1 waited five minutes; now it is due at once.
    assert due is not None and before - timedelta(seconds=1) <= due <= utcnow()
    # The sweep's next pass (the embedded one, or this one) runs the next level.
    delivered(stage, iid)
    engine.run_due(make_session_factory(stage.pipe.engine), utcnow())
    assert len(escalated(stage, iid)) == climbed + 1
    notes = [e for e in stage.state(iid)["timeline"] if e["kind"] == "note"]
    assert any("escalation to the next level asked for by bob" in e["message"] for e in notes)
    # Acknowledged, there is nothing to escalate.
    stage.press(ALICE, iid, "1")
    assert "cannot escalate" in stage.press(BOB, iid, "3").text


def test_other_keys_unknown_callees_and_bad_signatures(stage: Stage) -> None:
    iid = stage.page("database-postgres")
    other = stage.press(ALICE, iid, "9")
    assert other.status_code == 200 and "<Gather" in other.text and "3 to escalate" in other.text
    stranger = stage.press(STRANGER, iid, "1")
    assert stranger.status_code == 200 and "not a known user" in stranger.text
    nowhere = stage.press(ALICE, "x", "1")
    assert nowhere.status_code == 200 and "not about a known incident" in nowhere.text
    unsigned = stage.client.post(
        f"/api/v1/integrations/twilio/voice?incident={iid}", data={"Digits": "1", "To": ALICE}
    )
    assert unsigned.status_code == 403
    assert stage.state(iid)["state"] == "triggered"
