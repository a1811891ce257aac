"""The `auth:` settings: how API keys are hashed, and how long a checked key is trusted."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class AuthSettings(BaseModel):
    """API key hashing and verification."""

    model_config = ConfigDict(extra="forbid")

    # HMAC-SHA256 under this secret for new keys (INCIDENTS_AUTH__KEY_SECRET); unset: a
    # salted scrypt digest. Changing it invalidates the keys made under the old one.
    key_secret: SecretStr | None = None
    # A key checked against the database is trusted this long in each process: a revoked
    # key keeps working up to this long on other replicas (at once on the one revoking).
    cache_seconds: float = Field(default=5.0, ge=0, le=300)

    def secret(self) -> str | None:
        """The server secret as text, or None when unset."""
        return self.key_secret.get_secret_value() if self.key_secret else None
