"""Alert fingerprints computed exactly as Prometheus and Alertmanager compute them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import orjson

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1
_SEPARATOR = 0xFF


def _fnv_add(h: int, data: bytes) -> int:
    for byte in data:
        h ^= byte
        h = (h * _FNV_PRIME) & _MASK
    return h


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """FNV-1a 64 over the sorted label set: the fingerprint Alertmanager would send."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        h = _fnv_add(h, name.encode())
        h = _fnv_add(h, b"\xff")
        h = _fnv_add(h, labels[name].encode())
        h = _fnv_add(h, b"\xff")
    return f"{h:016x}"


def content_key(head: list[str], identities: list[bytes]) -> str:
    """A SHA-256 over a delivery's head and its alerts' digests, whatever their order."""
    digest = hashlib.sha256(orjson.dumps(head))
    for identity in sorted(identities):
        digest.update(identity)
    return digest.hexdigest()
