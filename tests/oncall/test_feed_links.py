"""Secret calendar-feed links: a calendar app, which sends no key, subscribes to a
schedule's feed through a link whose token opens that schedule's feed and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import icalendar
import pytest
from fastapi.testclient import TestClient

from tests.conftest import AUTH

from .documents import PRIMARY, USERS, schedules


def _setup(client: TestClient) -> None:
    assert client.put("/api/v1/users", json=USERS, headers=AUTH).status_code == 200
    other = dict(PRIMARY, name="secondary")
    response = client.put("/api/v1/schedules", json=schedules(PRIMARY, other), headers=AUTH)
    assert response.status_code == 200, response.text


def _link(client: TestClient, name: str) -> tuple[str, str]:
    response = client.get(f"/api/v1/schedules/{name}/feed-url", headers=AUTH)
    assert response.status_code == 200, response.text
    link = response.json()
    assert link["url"].endswith(link["path"])
    [token] = parse_qs(urlsplit(link["path"]).query)["token"]
    return link["path"], token


def test_the_link_opens_its_schedules_feed_without_a_key(client: TestClient) -> None:
    _setup(client)
    path, token = _link(client, "primary")
    assert path.startswith("/feeds/schedules/primary.ics?token=")
    assert len(token) >= 40
    fetched = client.get(path)  # no Authorization header, as a calendar app
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["content-type"].startswith("text/calendar")
    with_key = client.get("/api/v1/schedules/primary.ics", headers=AUTH)
    ours = icalendar.Calendar.from_ical(fetched.content).walk("VEVENT")
    theirs = icalendar.Calendar.from_ical(with_key.content).walk("VEVENT")
    assert [str(e["UID"]) for e in ours] == [str(e["UID"]) for e in theirs]
    assert len(ours) > 0


def test_a_token_opens_nothing_else(client: TestClient) -> None:
    _setup(client)
    _, token = _link(client, "primary")
    _, other = _link(client, "secondary")
    assert token != other
    wrong = client.get("/feeds/schedules/secondary.ics", params={"token": token})
    assert wrong.status_code == 403
    assert "does not open" in wrong.json()["message"]
    feed = "/feeds/schedules/primary.ics"
    assert client.get(feed, params={"token": token[:-1]}).status_code == 403
    assert client.get(feed).status_code == 422  # no token at all
    # The token is no key: the API refuses it.
    as_key = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/schedules", headers=as_key).status_code == 401


def test_links_need_a_key_and_a_schedule(client: TestClient) -> None:
    _setup(client)
    assert client.get("/api/v1/schedules/primary/feed-url").status_code == 401
    missing = client.get("/api/v1/schedules/nobody/feed-url", headers=AUTH)
    assert missing.status_code == 404


def test_a_new_secret_revokes_every_link(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    first = client_for(db_url, auth={"key_secret": "first-secret-0123456789abcdef"})
    _setup(first)
    path, _ = _link(first, "primary")
    assert first.get(path).status_code == 200
    second = client_for(db_url, auth={"key_secret": "second-secret-0123456789abcdef"})
    assert second.get(path).status_code == 403
    assert second.get(_link(second, "primary")[0]).status_code == 200


def test_the_public_address_leads_the_link(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(db_url, public_url="https://oncall.example.com/incidents/")
    _setup(client)
    response = client.get("/api/v1/schedules/primary/feed-url", headers=AUTH).json()
    assert response["url"].startswith("https://oncall.example.com/incidents/feeds/schedules/")


@pytest.mark.parametrize(("token", "status"), [("", 403), ("x" * 129, 422)])
def test_a_bad_token_parameter_is_a_4xx(client: TestClient, token: str, status: int) -> None:
    _setup(client)
    response = client.get("/feeds/schedules/primary.ics", params={"token": token})
    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["field"] == "token"
