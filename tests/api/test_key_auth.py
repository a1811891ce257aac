"""Checking keys: cached answers, last use written about once a minute, exact expiry,
revocation within the cache's lifetime, constant-time comparison, never a key in the
log, and a 503 (not a 500, not a 401) when the database cannot say."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from incidents.api.credentials import Authenticator, startup_warnings
from incidents.api.principal import BOOTSTRAP
from incidents.apikeys import store
from incidents.apikeys.models import API_KEYS
from incidents.db import create_db_engine, make_session_factory, session_scope, utcnow
from incidents.exceptions import Unauthorized
from tests.api.keys import KEY_SECRET, bearer, make_key
from tests.conftest import AUTH, TOKEN, make_settings


class Clocks:
    """The authenticator's two clocks: monotonic (the cache) and wall time (expiry)."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = utcnow()

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[sa.Engine]:
    made = create_db_engine(sqlite_url)
    yield made
    made.dispose()


def statements(engine: sa.Engine) -> list[str]:
    """Every statement run on the api_keys table from now on."""
    seen: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "api_keys" in statement:
            seen.append(statement.split()[0].upper())

    sa.event.listen(engine, "before_cursor_execute", record)
    return seen


def new_key(
    engine: sa.Engine, name: str, expires_at: datetime | None = None, secret: str = KEY_SECRET
) -> tuple[str, int]:
    with session_scope(make_session_factory(engine)) as session:
        made = store.create_key(
            session,
            name=name,
            scopes=["incidents:read"],
            owner="alice",
            now=utcnow(),
            server_secret=secret,
            expires_at=expires_at,
        )
    return made.key, made.info.id


def authenticator(engine: sa.Engine, clocks: Clocks, **auth: Any) -> Authenticator:
    settings = make_settings("sqlite://", auth={"key_secret": KEY_SECRET, **auth})
    return Authenticator(
        settings, make_session_factory(engine), clock=lambda: clocks.mono, now=lambda: clocks.wall
    )


def test_answers_are_cached_and_last_use_is_written_about_once_a_minute(
    engine: sa.Engine,
) -> None:
    key, _ = new_key(engine, "reader")
    clocks = Clocks()
    auth = authenticator(engine, clocks, cache_seconds=5)
    seen = statements(engine)

    async def burst(count: int) -> None:
        for principal in await asyncio.gather(*[auth.authenticate(f"Bearer {key}")] * count):
            assert principal.actor == "alice" and principal.scopes == {"incidents:read"}

    asyncio.run(burst(50))  # concurrent first requests share one lookup
    assert seen == ["SELECT", "UPDATE"]
    asyncio.run(burst(50))
    assert seen == ["SELECT", "UPDATE"]  # all from the cache
    clocks.advance(6)
    asyncio.run(burst(5))
    assert seen == ["SELECT", "UPDATE", "SELECT"]  # looked up again; used < 1 min ago
    clocks.advance(60)
    asyncio.run(burst(5))
    assert seen == ["SELECT", "UPDATE", "SELECT", "SELECT", "UPDATE"]
    with engine.connect() as conn:
        [used] = conn.execute(sa.select(API_KEYS.c.last_used_at)).scalars()
    assert used is not None and abs(used - clocks.wall) < timedelta(seconds=1)


def test_a_client_hanging_up_does_not_fail_others_waiting_on_the_same_key(
    engine: sa.Engine,
) -> None:
    key, _ = new_key(engine, "shared")
    auth = authenticator(engine, Clocks())
    seen = statements(engine)

    async def run() -> None:
        first = asyncio.create_task(auth.authenticate(f"Bearer {key}"))
        await asyncio.sleep(0)  # the first request starts the lookup
        second = asyncio.create_task(auth.authenticate(f"Bearer {key}"))
        await asyncio.sleep(0)
        first.cancel()
        assert (await second).name == "shared"
        assert first.cancelled()

    asyncio.run(run())
    assert seen.count("SELECT") == 1


def test_expiry_is_exact_even_while_cached(engine: sa.Engine) -> None:
    clocks = Clocks()
    key, _ = new_key(engine, "temp", expires_at=clocks.wall + timedelta(seconds=30))
    auth = authenticator(engine, clocks, cache_seconds=300)
    asyncio.run(auth.authenticate(f"Bearer {key}"))
    clocks.wall += timedelta(seconds=31)  # the cache entry is still fresh
    with pytest.raises(Unauthorized, match="expired"):
        asyncio.run(auth.authenticate(f"Bearer {key}"))


def test_a_revocation_elsewhere_applies_within_the_cache_lifetime(engine: sa.Engine) -> None:
    key, key_id = new_key(engine, "revoked-elsewhere")
    clocks = Clocks()
    auth = authenticator(engine, clocks, cache_seconds=5)
    asyncio.run(auth.authenticate(f"Bearer {key}"))
    with session_scope(make_session_factory(engine)) as session:
        store.revoke_key(session, store.key_by_id(session, key_id), utcnow())
    asyncio.run(auth.authenticate(f"Bearer {key}"))  # another replica: cached a while
    clocks.advance(5.1)
    with pytest.raises(Unauthorized, match="revoked"):
        asyncio.run(auth.authenticate(f"Bearer {key}"))


def test_wrong_keys_are_refused_and_cached_too(engine: sa.Engine) -> None:
    key, _ = new_key(engine, "real")
    auth = authenticator(engine, Clocks())
    seen = statements(engine)
    forged = key[:-4] + "AAAA"  # the real key's id, a wrong secret
    for header in [f"Bearer {forged}", f"Bearer {forged}", "Bearer inc_zzzzzzzz_" + "a" * 40]:
        with pytest.raises(Unauthorized, match="invalid credentials"):
            asyncio.run(auth.authenticate(header))
    assert seen == ["SELECT", "SELECT"]
    with pytest.raises(Unauthorized, match="invalid credentials"):
        asyncio.run(auth.authenticate("Bearer not-a-key"))  # not even looked up
    assert seen == ["SELECT", "SELECT"]
    # A key made under another server secret does not verify under this one.
    other, _ = new_key(engine, "other-secret", secret="another-secret")
    with pytest.raises(Unauthorized):
        asyncio.run(auth.authenticate(f"Bearer {other}"))


def test_tokens_and_keys_are_compared_in_constant_time(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = new_key(engine, "hmac-key")
    scrypt_key, _ = new_key(engine, "scrypt-key", secret="")
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    settings = make_settings("sqlite://", api_token=TOKEN, auth={"key_secret": KEY_SECRET})
    auth = Authenticator(settings, make_session_factory(engine))
    assert asyncio.run(auth.authenticate(f"Bearer {TOKEN}")) is BOOTSTRAP
    assert compared == [(TOKEN.encode(), TOKEN.encode())]
    for presented in (key, scrypt_key):
        compared.clear()
        assert asyncio.run(auth.authenticate(f"Bearer {presented}")).key_id is not None
        # Against the token first, then the digest: each through compare_digest.
        assert len(compared) == 2 and compared[0][0] == presented.encode()
        # Hex digests: 32 bytes of HMAC-SHA256, 64 of scrypt.
        assert compared[1][0] == compared[1][1] and len(compared[1][0]) in (64, 128)


def test_a_key_never_appears_in_the_log(
    sqlite_url: str, client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(sqlite_url, auth={"key_secret": KEY_SECRET})
    key = make_key(client, "logged", "incidents:read")
    forged = key[:-6] + "ZZZZZZ"
    caplog.set_level(logging.DEBUG)
    headers = [bearer(key), bearer(forged), {"Authorization": f"Basic {forged}"}]
    for header in headers:
        client.get("/api/v1/incidents", headers=header)
        client.post("/api/v1/alerts", json=[], headers=header)  # 403 for this key
    assert client.delete("/api/v1/api-keys/1", headers=AUTH).status_code == 200
    client.get("/api/v1/incidents", headers=bearer(key))  # revoked
    assert any(r.name == "incidents.auth" for r in caplog.records)  # refusals were logged
    secret = key.rsplit("_", 1)[1]
    for record in caplog.records:
        text = f"{record.getMessage()} {vars(record)}"
        for forbidden in (key, forged, secret, forged.rsplit("_", 1)[1]):
            assert forbidden not in text, record.getMessage()


def test_a_database_outage_while_checking_a_key_is_503_not_500_nor_401(
    client_for: Callable[..., TestClient],
) -> None:
    # Nothing listens on port 1: every lookup fails at once.
    client = client_for("postgresql://postgres@127.0.0.1:1/nowhere")
    body = b'{"version":"4","alerts":[]}'
    key = "inc_abcdefgh_" + "k" * 40
    response = client.post("/api/v1/alerts/alertmanager", content=body, headers=bearer(key))
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert response.json()["error"] == "unavailable" and key not in response.text
    # Not shaped like a key: refused without asking the database.
    assert client.post("/api/v1/alerts", content=b"[]", headers=bearer("nope")).status_code == 401
    # The bootstrap token needs no database.
    assert client.get("/api/v2/status", headers=AUTH).status_code == 200


def test_the_bootstrap_token_warns_in_production_settings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="incidents.auth")
    startup_warnings(make_settings("sqlite:///x.db"))
    assert [r.levelno for r in caplog.records] == []
    startup_warnings(make_settings("postgresql://db/incidents"))
    startup_warnings(make_settings("sqlite:///x.db", broker_url="redis://localhost:6379/0"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "incidents apikey create" in warnings[0].getMessage()
    assert TOKEN not in warnings[0].getMessage()
    caplog.clear()
    startup_warnings(make_settings("postgresql://db/incidents", api_token=""))
    assert [r.levelno for r in caplog.records] == [logging.INFO]
