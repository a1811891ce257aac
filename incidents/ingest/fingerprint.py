"""Alert fingerprints computed exactly as Prometheus and Alertmanager compute them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

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


# Identities per serialisation: a storm's key never needs one copy of the whole body.
_KEY_CHUNK = 1000


def content_key(head: list[str], identities: Sequence[Any]) -> str:
    """A SHA-256 of a delivery's head and its (sorted) alert identities."""
    digest = hashlib.sha256(orjson.dumps(head))
    for at in range(0, len(identities), _KEY_CHUNK):
        chunk = identities[at : at + _KEY_CHUNK]
        digest.update(orjson.dumps(chunk, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()
