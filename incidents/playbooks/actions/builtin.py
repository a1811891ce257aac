"""Imports every action module, so that each registers itself."""

from __future__ import annotations

# One import per action module (each calls `register` at import).
from . import incident_ops, silence  # noqa: F401
