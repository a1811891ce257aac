"""The key's text (`inc_<id>_<secret>`), and how its digest is made and checked.

A key is random and long (about 238 bits in its secret part), so guessing is out of the
question: the digest only has to make a stolen database useless. Two schemes:

- `hmac-sha256$<hex>`: HMAC under the server secret (`auth.key_secret`); fast, and
  useless without the secret, which does not live in the database;
- `scrypt$<n>$<r>$<p>$<salt>$<hex>`: a salted slow hash, used when no server secret is
  set. Each check costs tens of milliseconds, so the authenticator caches successes.

The scheme is written into each stored digest, so keys made under either stay valid
when the other is configured later (an HMAC key needs its secret unchanged).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from typing import Final

PREFIX: Final = "inc_"
ID_LENGTH: Final = 8
SECRET_LENGTH: Final = 40
_ID_ALPHABET: Final = string.ascii_lowercase + string.digits
_SECRET_ALPHABET: Final = string.ascii_letters + string.digits
_KEY_LENGTH: Final = len(PREFIX) + ID_LENGTH + 1 + SECRET_LENGTH

# 16 MiB of memory and ~40 ms per check on a small machine.
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1


def new_key() -> tuple[str, str]:
    """A fresh random key and its public id."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{PREFIX}{key_id}_{secret}", key_id


def key_id_of(presented: str) -> str | None:
    """The public id of something shaped like one of our keys, else None."""
    if len(presented) != _KEY_LENGTH or not presented.startswith(PREFIX):
        return None
    key_id = presented[len(PREFIX) : len(PREFIX) + ID_LENGTH]
    if presented[len(PREFIX) + ID_LENGTH] != "_" or not all(c in _ID_ALPHABET for c in key_id):
        return None
    return key_id


def _scrypt(key: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(key.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def hash_key(key: str, server_secret: str | None) -> str:
    """The digest to store for `key`: HMAC under the server secret, else salted scrypt."""
    if server_secret:
        digest = hmac.new(server_secret.encode(), key.encode(), hashlib.sha256).hexdigest()
        return f"hmac-sha256${digest}"
    salt = secrets.token_bytes(16)
    digest = _scrypt(key, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P).hex()
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest}"


def verify_key(key: str, stored: str, server_secret: str | None) -> bool:
    """True when `key` is the key whose digest is `stored`; compared in constant time."""
    scheme, _, rest = stored.partition("$")
    if scheme == "hmac-sha256":
        if not server_secret:
            return False  # made under a server secret that is no longer configured
        computed = hmac.new(server_secret.encode(), key.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(computed, rest)
    if scheme == "scrypt":
        try:
            n, r, p, salt, expected = rest.split("$")
            computed = _scrypt(key, bytes.fromhex(salt), int(n), int(r), int(p)).hex()
        except ValueError:
            return False
        return hmac.compare_digest(computed, expected)
    return False
