"""Imports every action module, so that each registers itself."""

from __future__ import annotations

# One import per action module (each calls `register` at import).
from . import (  # noqa: F401
    http_request,
    incident_ops,
    kubernetes_actions,
    kubernetes_pods,
    script,
    silence,
    wait_check,
)
