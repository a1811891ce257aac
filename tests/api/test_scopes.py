"""Every /api/ operation, generated from the app's routes, declares exactly one scope and
enforces it: no key is a 401, a key without the scope a 403, a key with it (or `admin`)
gets through. A route added without a scope fails here."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from incidents.api.app import create_app
from incidents.api.guard import SIGNED_PATHS
from incidents.api.principal import declared_scopes, require
from incidents.apikeys.scopes import ADMIN, INCIDENTS_READ, SCOPES
from incidents.migrate import upgrade
from tests.api.keys import KEY_SECRET, bearer, make_key
from tests.conftest import make_settings

Operation = tuple[str, str]  # (method, path as declared)


def api_operations(app: FastAPI) -> Iterator[tuple[str, str, list[str]]]:
    """(method, path, declared scopes) of every operation under /api/ that needs a key."""
    for route in iter_route_contexts(app.routes):
        path = getattr(route, "path_format", None) or ""
        if not path.startswith("/api/"):
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method == "POST" and path in SIGNED_PATHS:
                continue  # signed by the provider instead (Slack, Twilio)
            yield method, path, declared_scopes(route)


def unscoped(app: FastAPI) -> list[str]:
    """Operations that declare no scope, or more than one."""
    return [f"{m} {p} {s}" for m, p, s in api_operations(app) if len(s) != 1]


# Collected once, from the app as it is built: a new route is a new case.
_APP = create_app(make_settings("sqlite://"))
OPERATIONS = sorted((m, p) for m, p, _ in api_operations(_APP))
SCOPE_OF = {(m, p): s[0] for m, p, s in api_operations(_APP) if s}


def test_every_api_operation_declares_exactly_one_scope() -> None:
    assert len(OPERATIONS) > 30
    assert unscoped(_APP) == []
    assert set(SCOPE_OF.values()) <= set(SCOPES)


def test_a_route_without_a_scope_is_caught() -> None:
    app = create_app(make_settings("sqlite://"))
    extra = APIRouter(prefix="/api/v1/new-thing")

    @extra.get("")
    def new_thing() -> dict[str, str]:
        return {}

    @extra.get("/scoped", dependencies=[require(INCIDENTS_READ)])
    def scoped_thing() -> dict[str, str]:
        return {}

    app.include_router(extra)
    assert unscoped(app) == ["GET /api/v1/new-thing []"]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app on SQLite, and a key per scope."""
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('scopes')) / 'incidents.db'}"
    upgrade(url)
    with TestClient(create_app(make_settings(url, auth={"key_secret": KEY_SECRET}))) as client:
        keys = {scope: make_key(client, scope.replace(":", "-"), scope) for scope in SCOPES}
        yield client, keys


def _concrete(path: str) -> str:
    # A dummy value fits every path parameter (ids are integers, names are text); it
    # names nothing that exists, so DELETE /api/v1/api-keys/{id} revokes none of ours.
    return re.sub(r"\{[^}]+\}", "424242", path)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_the_scope_is_enforced(
    keyed: tuple[TestClient, dict[str, str]], method: str, path: str
) -> None:
    client, keys = keyed
    scope = SCOPE_OF[(method, path)]
    url = _concrete(path)

    def call(headers: dict[str, str]) -> int:
        status: int = client.request(method, url, headers=headers).status_code
        return status

    assert call({}) == 401
    assert call(bearer("inc_aaaaaaaa_" + "x" * 40)) == 401
    others = [s for s in SCOPES if s not in (scope, ADMIN)]
    for other in others:
        assert call(bearer(keys[other])) == 403, other
    for allowed in (scope, ADMIN):
        status = call(bearer(keys[allowed]))
        assert status not in (401, 403), (allowed, status)
        assert status < 500, (allowed, status)


def test_signed_provider_paths_need_no_key(
    keyed: tuple[TestClient, dict[str, str]], client_for: Callable[..., TestClient]
) -> None:
    client, _ = keyed
    for path in sorted(SIGNED_PATHS):
        # Refused for its missing signature (a 403 or 4xx of the handler's), never a 401.
        status = client.post(path, content=b"").status_code
        assert status != 401, (path, status)


def test_a_key_without_alerts_write_is_a_counted_403_on_each_ingest_endpoint(
    keyed: tuple[TestClient, dict[str, str]],
) -> None:
    from incidents.apikeys.scopes import ALERTS_WRITE, INCIDENTS_WRITE
    from tests.api.test_auth import rejected
    from tests.factories import am_alert, am_payload

    client, keys = keyed
    webhook = am_payload([am_alert({"alertname": "A"})])
    before = {source: rejected(source, "403") for source in ("alertmanager", "generic")}
    wrong = bearer(keys[INCIDENTS_WRITE])
    webhook_path = "/api/v1/alerts/alertmanager"
    assert client.post(webhook_path, json=webhook, headers=wrong).status_code == 403
    assert client.post("/api/v1/alerts", json=[], headers=wrong).status_code == 403
    assert rejected("alertmanager", "403") == before["alertmanager"] + 1
    assert rejected("generic", "403") == before["generic"] + 1
    right = bearer(keys[ALERTS_WRITE])
    assert client.post(webhook_path, json=webhook, headers=right).status_code == 200
    assert rejected("alertmanager", "403") == before["alertmanager"] + 1
    metrics = client.get("/metrics").text
    assert 'incidents_ingest_rejected_total{source="generic",status="403"}' in metrics
