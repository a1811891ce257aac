"""The action registry: each action is a small module, registered here by name."""

from __future__ import annotations

from .base import Action

_REGISTRY: dict[str, Action] = {}


def register(action: Action) -> Action:
    """Add an action under its name; a second action of the same name is a bug."""
    if action.name in _REGISTRY:
        raise RuntimeError(f"playbook action {action.name!r} is registered twice")
    _REGISTRY[action.name] = action
    return action


def _load() -> None:
    # The modules register their actions as they are imported.
    from . import builtin  # noqa: F401


def get(name: str) -> Action | None:
    """The action of that name, or None."""
    if not _REGISTRY:
        _load()
    return _REGISTRY.get(name)


def names() -> list[str]:
    """Every registered action's name, sorted."""
    if not _REGISTRY:
        _load()
    return sorted(_REGISTRY)
