"""Making API keys in tests: through the API, with the bootstrap token."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import AUTH

# Keys are HMACs under this secret in most tests: scrypt has tests of its own.
KEY_SECRET = "test-key-secret-not-for-production"


def make_key(
    client: TestClient, name: str, *scopes: str, owner: str | None = None, **extra: Any
) -> str:
    """A new key with these scopes; the key itself."""
    body: dict[str, Any] = {"name": name, "scopes": list(scopes), **extra}
    if owner is not None:
        body["owner"] = owner
    response = client.post("/api/v1/api-keys", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for a key."""
    return {"Authorization": f"Bearer {key}"}
