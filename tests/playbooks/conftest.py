"""Fixtures for the playbook tests: a recording HTTP server and action contexts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from incidents.playbooks.actions.base import ActionContext
from tests.conftest import make_settings

from .servers import RecordingServer


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    """A started RecordingServer, stopped after the test."""
    with RecordingServer() as server:
        yield server


class FakeSleep:
    """A sleep that returns at once and remembers what it was asked to wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    """An injectable sleep that takes no time."""
    return FakeSleep()


@pytest.fixture
def make_ctx(fake_sleep: FakeSleep) -> Callable[..., ActionContext]:
    """Build an ActionContext: `make_ctx(timeout=5, playbooks={...})`."""

    def build(
        *, timeout: float = 5.0, playbooks: dict[str, Any] | None = None, **fields: Any
    ) -> ActionContext:
        settings = make_settings("sqlite://", playbooks=playbooks or {})
        values: dict[str, Any] = {
            "settings": settings,
            "run_id": 1,
            "incident_id": 1,
            "step": "step",
            "timeout": timeout,
            "actor": "playbook:test",
            "sleep": fake_sleep,
        }
        values.update(fields)
        return ActionContext(**values)

    return build
