"""`wait` and `check`, with an injected sleep and a real local HTTP server."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from incidents.playbooks.actions import get
from incidents.playbooks.actions.base import ActionContext, ActionError

from .conftest import FakeSleep
from .servers import RecordingServer, Reply, self_signed_cert

wait = get("wait")
check = get("check")
assert wait is not None and check is not None


def check_params(**values: Any) -> Any:
    """Validated check parameters."""
    return check.params.model_validate(values)


def test_wait_sleeps_through_the_injected_sleep(
    make_ctx: Callable[..., ActionContext], fake_sleep: FakeSleep
) -> None:
    p = wait.params.model_validate({"seconds": 12.5})
    out = wait.run(p, make_ctx(timeout=60))
    assert fake_sleep.calls == [12.5]
    assert out.result == {"waited_seconds": 12.5}
    assert wait.describe(p) == "wait 12.5 s"
    assert wait.idempotent(p)


def test_wait_longer_than_the_timeout_fails_at_once(
    make_ctx: Callable[..., ActionContext], fake_sleep: FakeSleep
) -> None:
    p = wait.params.model_validate({"seconds": 120})
    with pytest.raises(ActionError, match="120 s does not fit in the step's timeout of 60 s"):
        wait.run(p, make_ctx(timeout=60))
    assert fake_sleep.calls == []
    wait.run(wait.params.model_validate({"seconds": 60}), make_ctx(timeout=60))
    assert fake_sleep.calls == [60]
    for bad in (0, -1, 3601):
        with pytest.raises(ValidationError, match="seconds"):
            wait.params.model_validate({"seconds": bad})


def test_check_retries_until_the_service_is_healthy(
    recording_server: RecordingServer,
    make_ctx: Callable[..., ActionContext],
    fake_sleep: FakeSleep,
) -> None:
    recording_server.respond(
        "GET", "/healthz", Reply(503, text="starting"), Reply(503), Reply(200, text="ok")
    )
    p = check_params(
        url=f"{recording_server.url}/healthz", wait_seconds=10, attempts=5, interval_seconds=3
    )
    out = check.run(p, make_ctx(timeout=60))
    assert out.result == {"ok": True, "status": 200, "attempts": 3}
    assert out.output == "ok"
    assert fake_sleep.calls == [10, 3, 3]
    assert len(recording_server.requests_to("GET", "/healthz")) == 3


def test_check_that_never_passes_fails_with_its_last_status(
    recording_server: RecordingServer,
    make_ctx: Callable[..., ActionContext],
    fake_sleep: FakeSleep,
) -> None:
    recording_server.respond("HEAD", "/ready", Reply(503))
    url = f"{recording_server.url}/ready"
    p = check_params(url=url, method="head", expect_status=[200, 204], attempts=2)
    with pytest.raises(ActionError) as caught:
        check.run(p, make_ctx(timeout=30))
    error = caught.value
    assert not error.retryable
    assert error.result == {"ok": False, "status": 503, "attempts": 2}
    assert url in error.message and "last status 503, expected 200 or 204" in error.message
    assert fake_sleep.calls == [5]
    assert [r.method for r in recording_server.requests] == ["HEAD", "HEAD"]


def test_check_body_contains(
    recording_server: RecordingServer, make_ctx: Callable[..., ActionContext]
) -> None:
    recording_server.respond("GET", "/status", Reply(200, json={"state": "degraded"}))
    p = check_params(url=f"{recording_server.url}/status", body_contains='"state": "up"')
    with pytest.raises(ActionError, match="the body did not contain"):
        check.run(p, make_ctx())
    recording_server.respond("GET", "/status", Reply(200, json={"state": "up"}))
    assert check.run(p, make_ctx()).result["ok"] is True


def test_check_of_an_unreachable_url_names_the_error(
    make_ctx: Callable[..., ActionContext],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p = check_params(url=f"http://127.0.0.1:{port}/healthz", attempts=2, interval_seconds=1)
    with pytest.raises(ActionError, match="ConnectError") as caught:
        check.run(p, make_ctx(timeout=10))
    assert caught.value.result == {"ok": False, "status": None, "attempts": 2}


def test_check_whose_waits_exceed_the_timeout_fails_before_probing(
    recording_server: RecordingServer,
    make_ctx: Callable[..., ActionContext],
    fake_sleep: FakeSleep,
) -> None:
    p = check_params(url=recording_server.url, wait_seconds=30, attempts=4, interval_seconds=10)
    with pytest.raises(ActionError, match="waits 60 s in all"):
        check.run(p, make_ctx(timeout=60))
    assert recording_server.requests == [] and fake_sleep.calls == []


def test_check_parameters_and_description() -> None:
    p = check_params(url="https://svc.example/healthz", attempts=5, interval_seconds=10)
    assert check.describe(p) == (
        "check GET https://svc.example/healthz answers 200, up to 5 probes 10 s apart"
    )
    assert check.idempotent(p)
    for values, message in [
        ({"url": "file:///etc/passwd"}, "http:// or https://"),
        ({"url": "http://x/", "method": "POST"}, "method"),
        ({"url": "http://x/", "attempts": 0}, "attempts"),
        ({"url": "http://x/", "wait_seconds": -1}, "wait_seconds"),
        ({"url": "http://x/", "body_contains": ""}, "must not be empty"),
        ({"url": "http://x/", "retries": 2}, "Extra inputs are not permitted"),
    ]:
        with pytest.raises(ValidationError, match=message):
            check_params(**values)


def test_check_of_a_self_signed_server(
    tmp_path: Path, make_ctx: Callable[..., ActionContext]
) -> None:
    with RecordingServer(tls=self_signed_cert(tmp_path)) as server:
        with pytest.raises(ActionError, match="CERTIFICATE_VERIFY_FAILED"):
            check.run(check_params(url=f"{server.url}/healthz"), make_ctx())
        out = check.run(check_params(url=f"{server.url}/healthz", verify_tls=False), make_ctx())
        assert out.result == {"ok": True, "status": 200, "attempts": 1}
