"""API keys through the API and the CLI: made (shown once), listed (never the key),
revoked; stored as a digest only; bad requests are 4xx naming what is wrong."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.apikeys.models import API_KEYS
from incidents.apikeys.tokens import verify_key
from incidents.cli import main
from incidents.db import create_db_engine, utcnow
from tests.api.keys import KEY_SECRET, bearer, make_key
from tests.conftest import AUTH, ROOT

KEYS = "/api/v1/api-keys"
KEY_TEXT = re.compile(r"inc_[a-z0-9]{8}_[A-Za-z0-9]{40}")


def stored_rows(db_url: str) -> list[dict[str, Any]]:
    """Every api_keys row as the database holds it."""
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(API_KEYS))]
    finally:
        engine.dispose()


def test_a_key_is_shown_once_stored_as_a_digest_used_and_revoked(
    db_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(db_url, auth={"key_secret": KEY_SECRET})
    made = client.post(
        KEYS,
        json={"name": "alertmanager", "owner": "sre", "scopes": ["alerts:write"]},
        headers=AUTH,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    key = body["key"]
    assert KEY_TEXT.fullmatch(key)
    assert key.startswith(f"inc_{body['prefix']}_")
    assert body["state"] == "active" and body["created_by"] == "bootstrap-token"
    assert body["scopes"] == ["alerts:write"] and body["last_used_at"] is None

    # The database holds the digest, never the key or its secret part.
    [row] = stored_rows(db_url)
    secret_part = key.rsplit("_", 1)[1]
    assert all(secret_part not in str(value) for value in row.values())
    assert row["key_hash"].startswith("hmac-sha256$")
    assert verify_key(key, row["key_hash"], KEY_SECRET)
    assert not verify_key(key[:-1] + "0", row["key_hash"], KEY_SECRET)

    ingest = client.post("/api/v1/alerts", json=[], headers=bearer(key))
    assert ingest.status_code not in (401, 403), ingest.text
    listed = client.get(KEYS, headers=AUTH)
    assert listed.status_code == 200
    [shown] = listed.json()
    assert "key" not in shown and "key_hash" not in shown and secret_part not in listed.text
    assert shown["last_used_at"] is not None and shown["owner"] == "sre"

    revoked = client.delete(f"{KEYS}/{body['id']}", headers=AUTH)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["state"] == "revoked"
    refused = client.post("/api/v1/alerts", json=[], headers=bearer(key))
    assert refused.status_code == 401  # at once in the process that revoked it
    assert "revoked" in refused.json()["message"] and key not in refused.text
    again = client.delete(f"{KEYS}/{body['id']}", headers=AUTH)
    assert again.status_code == 409 and "revoked already" in again.json()["message"]
    assert client.delete(f"{KEYS}/999", headers=AUTH).status_code == 404
    # A revoked key's name is free again.
    assert KEY_TEXT.fullmatch(make_key(client, "alertmanager", "alerts:write"))


def test_without_a_server_secret_keys_are_salted_scrypt(
    sqlite_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(sqlite_url)
    key = make_key(client, "reader", "incidents:read")
    [row] = stored_rows(sqlite_url)
    assert row["key_hash"].startswith("scrypt$")
    assert client.get("/api/v1/incidents", headers=bearer(key)).status_code == 200
    second = make_key(client, "reader-2", "incidents:read")
    [_, other] = stored_rows(sqlite_url)
    # Salted: equal inputs would not give equal digests, and these differ anyway.
    assert other["key_hash"].split("$")[4] != row["key_hash"].split("$")[4]
    assert client.get("/api/v1/incidents", headers=bearer(second)).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        (
            {"name": "x", "scopes": ["incidents:read", "alerts:read"]},
            422,
            "scopes[1]",
            "alerts:read",
        ),
        ({"name": "x", "scopes": []}, 422, "scopes", "at least 1"),
        ({"name": "has space", "scopes": ["admin"]}, 422, "name", "not a key name"),
        ({"name": "x", "scopes": ["admin"], "expires_in_days": 0}, 422, "expires_in_days", ""),
        (
            {"name": "x", "scopes": ["admin"], "expires_at": "2001-01-01T00:00:00Z"},
            422,
            "expires_at",
            "future",
        ),
        (
            {
                "name": "x",
                "scopes": ["admin"],
                "expires_at": "2099-01-01T00:00:00Z",
                "expires_in_days": 3,
            },
            422,
            "request",
            "not both",
        ),
        ({"name": "taken", "scopes": ["admin"]}, 409, "name", "exists"),
        ({"name": "x", "scopes": ["admin"], "owner": "a\x00b"}, 422, "owner", "printable"),
        ({"name": "x", "scopes": ["admin"], "secret": "mine"}, 422, "secret", ""),
    ],
)
def test_a_bad_key_request_is_a_4xx_naming_the_field(
    sqlite_url: str,
    client_for: Callable[..., TestClient],
    body: dict[str, Any],
    status: int,
    field: str,
    words: str,
) -> None:
    client = client_for(sqlite_url, auth={"key_secret": KEY_SECRET})
    make_key(client, "taken", "incidents:read")
    response = client.post(KEYS, json=body, headers=AUTH)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field
    assert words in error["message"]


def test_managing_keys_needs_admin_and_a_403_names_the_scope(
    sqlite_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(sqlite_url, auth={"key_secret": KEY_SECRET})
    writer = make_key(client, "writer", "incidents:write", "config:write")
    admin = make_key(client, "root", "admin", owner="ops-lead")
    refused = client.get(KEYS, headers=bearer(writer))
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "forbidden",
        "message": "this key lacks the scope admin",
        "scope": "admin",
    }
    made = client.post(KEYS, json={"name": "bot", "scopes": ["admin"]}, headers=bearer(admin))
    assert made.status_code == 201 and made.json()["created_by"] == "ops-lead"
    # admin implies every scope; incidents:write does not imply incidents:read.
    assert client.get("/api/v1/incidents", headers=bearer(admin)).status_code == 200
    assert client.get("/api/v1/incidents", headers=bearer(writer)).status_code == 403


def test_an_expired_key_is_refused_and_says_so(
    sqlite_url: str, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(sqlite_url, auth={"key_secret": KEY_SECRET})
    key = make_key(client, "short", "incidents:read", expires_in_days=1)
    assert client.get("/api/v1/incidents", headers=bearer(key)).status_code == 200
    engine = create_db_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.update(API_KEYS).values(expires_at=utcnow() - timedelta(seconds=1)))
    engine.dispose()
    client.app.state.authenticator.forget()  # type: ignore[attr-defined]
    refused = client.get("/api/v1/incidents", headers=bearer(key))
    assert refused.status_code == 401 and "expired" in refused.json()["message"]
    [listed] = client.get(KEYS, headers=AUTH).json()
    assert listed["state"] == "expired"


def _cli(
    args: list[str], db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> tuple[int, str, str]:
    for name in [n for n in os.environ if n.startswith("INCIDENTS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("INCIDENTS_DATABASE_URL", db_url)
    monkeypatch.setenv("INCIDENTS_AUTH__KEY_SECRET", KEY_SECRET)
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_prints_the_key_alone_lists_and_revokes(
    sqlite_url: str,
    client_for: Callable[..., TestClient],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The console script itself, as a script capturing the key would run it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env.update(INCIDENTS_DATABASE_URL=sqlite_url, INCIDENTS_AUTH__KEY_SECRET=KEY_SECRET)
    command = [sys.executable, "-m", "incidents.cli", "apikey", "create", "--name", "am"]
    made = subprocess.run(
        [*command, "--scope", "alerts:write", "--scope", "incidents:read", "--owner", "sre"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert made.stdout == f"{key}\n" and KEY_TEXT.fullmatch(key)
    assert "'am'" in made.stderr and key not in made.stderr

    client = client_for(sqlite_url, auth={"key_secret": KEY_SECRET})
    assert client.get("/api/v1/incidents", headers=bearer(key)).status_code == 200

    code, out, _ = _cli(["apikey", "list"], sqlite_url, capsys, monkeypatch)
    assert code == 0 and "am" in out and "alerts:write,incidents:read" in out
    code, out, _ = _cli(["apikey", "list", "-o", "json"], sqlite_url, capsys, monkeypatch)
    assert code == 0 and key not in out and '"owner": "sre"' in out

    code, out, err = _cli(["apikey", "revoke", "am"], sqlite_url, capsys, monkeypatch)
    assert code == 0 and out == "" and "revoked key 'am'" in err
    code, _, err = _cli(["apikey", "revoke", "am"], sqlite_url, capsys, monkeypatch)
    assert code == 1 and "revoked already" in err
    code, _, err = _cli(["apikey", "revoke", "nobody"], sqlite_url, capsys, monkeypatch)
    assert code == 1 and "no API key 'nobody'" in err

    client.app.state.authenticator.forget()  # type: ignore[attr-defined]  # another process revoked it
    assert client.get("/api/v1/incidents", headers=bearer(key)).status_code == 401


def test_the_cli_refuses_a_bad_key_request_by_name(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exited:
        _cli(
            ["apikey", "create", "--name", "x", "--scope", "alerts:read"],
            sqlite_url,
            capsys,
            monkeypatch,
        )
    assert exited.value.code == 2
    assert "invalid choice: 'alerts:read'" in capsys.readouterr().err
    code, out, err = _cli(
        ["apikey", "create", "--name", "bad name", "--scope", "admin"],
        sqlite_url,
        capsys,
        monkeypatch,
    )
    assert code == 1 and out == "" and "not a key name" in err
    _cli(
        ["apikey", "create", "--name", "twice", "--scope", "admin"], sqlite_url, capsys, monkeypatch
    )
    code, out, err = _cli(
        ["apikey", "create", "--name", "twice", "--scope", "admin"], sqlite_url, capsys, monkeypatch
    )
    assert code == 1 and out == "" and "exists" in err
