"""Slack gives up on a button press not answered within three seconds. The press is
answered in time over real HTTP (uvicorn), even when the action is held up by a lock on
the incident: the answer says it is being done, and the outcome follows through the
interaction's response_url once the action could run."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from incidents.models import INCIDENTS
from tests.acting.stage import SLACK_PATH, Stage, slack_headers
from tests.notify.test_routing_stage import wait_until

# Slack's limit, less a margin for a loaded machine.
IN_TIME = 2.9


@pytest.fixture
def served(stage: Stage) -> Iterator[str]:
    """The stage's app (already started by its test client) on a loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(stage.client.app, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def press(url: str, stage: Stage, incident_id: int) -> tuple[float, str]:
    """Press Acknowledge as alice: seconds until the answer, and its text."""
    body = stage.click_body("U0ALICE", "acknowledge", incident_id)
    began = time.monotonic()
    response = httpx.post(url + SLACK_PATH, content=body, headers=slack_headers(body), timeout=30)
    took = time.monotonic() - began
    assert response.status_code == 200, response.text
    return took, str(response.json()["text"])


def answered(stage: Stage, text: str) -> bool:
    return any(c.body.get("text", "").startswith(text) for c in stage.slack.calls("respond"))


def test_a_press_is_answered_in_time(stage: Stage, served: str) -> None:
    iid = stage.page("database-postgres")
    took, text = press(served, stage, iid)
    assert took < IN_TIME and text.startswith(f"Acknowledged #{iid}")
    wait_until("the answer", lambda: answered(stage, f"Acknowledged #{iid}"))


# A row lock that holds the action up: PostgreSQL's (SQLite locks the whole file).
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_held_up_press_is_answered_in_time_and_done_after(stage: Stage, served: str) -> None:
    iid = stage.page("database-postgres")
    with stage.pipe.engine.connect() as conn:
        held = conn.begin()
        # Another transaction has the incident: the press cannot act until it ends.
        conn.execute(sa.select(INCIDENTS.c.id).where(INCIDENTS.c.id == iid).with_for_update())
        took, text = press(served, stage, iid)
        assert took < IN_TIME, f"answered after {took:.2f} s"
        assert text == f"Working on it: acknowledge #{iid}..."
        assert stage.state(iid)["state"] == "triggered"  # not done yet
        held.rollback()
    wait_until("the acknowledgement", lambda: stage.state(iid)["state"] == "acknowledged")
    assert stage.state(iid)["acknowledged_by"] == "alice (via slack)"
    wait_until("the outcome", lambda: answered(stage, f"Acknowledged #{iid}"))
