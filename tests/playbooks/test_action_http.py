"""`http.request` against a real local HTTP server."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from incidents.playbooks.actions import get
from incidents.playbooks.actions.base import ActionContext, ActionError, ActionTimeout

from .servers import RecordingServer, Reply, self_signed_cert

SECRET = "Bearer s3cr3t-token-value"
action = get("http.request")
assert action is not None


def params(**values: Any) -> Any:
    """Validated http.request parameters."""
    return action.params.model_validate(values)


def test_get_returns_status_and_json_and_sends_headers(
    recording_server: RecordingServer, make_ctx: Callable[..., ActionContext]
) -> None:
    recording_server.respond("GET", "/api/health", Reply(200, json={"healthy": True, "n": 3}))
    p = params(
        method="get",
        url=f"{recording_server.url}/api/health?x=1",
        headers={"Authorization": SECRET},
    )
    out = action.run(p, make_ctx())
    assert out.result["status"] == 200
    assert out.result["json"] == {"healthy": True, "n": 3}
    assert out.result["elapsed_ms"] >= 0
    assert '"healthy": true' in out.output
    [request] = recording_server.requests
    assert (request.method, request.path, request.query) == ("GET", "/api/health", {"x": ["1"]})
    assert request.headers["authorization"] == SECRET
    assert SECRET not in repr(out.result) + out.output + action.describe(p)


def test_post_sends_a_dict_as_json_and_a_string_as_is(
    recording_server: RecordingServer, make_ctx: Callable[..., ActionContext]
) -> None:
    action.run(params(method="POST", url=f"{recording_server.url}/j", body={"a": [1]}), make_ctx())
    action.run(
        params(
            method="PUT",
            url=f"{recording_server.url}/t",
            body="plain words",
            headers={"Content-Type": "text/plain"},
        ),
        make_ctx(),
    )
    first, second = recording_server.requests
    assert first.method == "POST" and first.json() == {"a": [1]}
    assert first.headers["content-type"] == "application/json"
    assert second.method == "PUT" and second.body == b"plain words"
    assert second.headers["content-type"] == "text/plain"


def test_unexpected_status_fails_without_retry_and_keeps_status_and_body(
    recording_server: RecordingServer, make_ctx: Callable[..., ActionContext]
) -> None:
    recording_server.respond("DELETE", "/x", Reply(404, text="no such thing"))
    p = params(method="DELETE", url=f"{recording_server.url}/x", headers={"X-Key": SECRET})
    with pytest.raises(ActionError) as caught:
        action.run(p, make_ctx())
    error = caught.value
    assert not error.retryable
    assert error.result["status"] == 404
    assert error.output == "no such thing"
    assert "answered 404, expected any 2xx" in error.message
    assert SECRET not in error.message + repr(error.result) + error.output


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_throttled_or_unavailable_is_retryable(
    status: int, recording_server: RecordingServer, make_ctx: Callable[..., ActionContext]
) -> None:
    recording_server.respond("POST", "/hook", Reply(status, headers={"Retry-After": "7"}))
    with pytest.raises(ActionError) as caught:
        action.run(params(method="POST", url=f"{recording_server.url}/hook"), make_ctx())
    assert caught.value.retryable
    assert caught.value.result["status"] == status
    assert caught.value.result["retry_after_seconds"] == 7


def test_expect_status_list_and_a_single_status(
    recording_server: RecordingServer, make_ctx: Callable[..., ActionContext]
) -> None:
    recording_server.respond("POST", "/a", Reply(204, text=""))
    out = action.run(
        params(method="POST", url=f"{recording_server.url}/a", expect_status=[200, 204]),
        make_ctx(),
    )
    assert out.result["status"] == 204 and "json" not in out.result
    with pytest.raises(ActionError, match="answered 200, expected 201"):
        action.run(params(url=f"{recording_server.url}/b", expect_status=201), make_ctx())


def test_redirects_are_not_followed(
    recording_server: RecordingServer, make_ctx: Callable[..., ActionContext]
) -> None:
    recording_server.respond("GET", "/old", Reply(302, headers={"Location": "/new"}))
    with pytest.raises(ActionError, match="answered 302"):
        action.run(params(url=f"{recording_server.url}/old"), make_ctx())
    assert [r.path for r in recording_server.requests] == ["/old"]


def test_a_slow_server_is_a_timeout(
    recording_server: RecordingServer, make_ctx: Callable[..., ActionContext]
) -> None:
    recording_server.respond("GET", "/slow", Reply(200, delay=2.0))
    with pytest.raises(ActionTimeout) as caught:
        action.run(params(url=f"{recording_server.url}/slow"), make_ctx(timeout=0.3))
    assert caught.value.retryable
    assert "no answer within 0.3 s" in caught.value.message


def test_a_refused_connection_is_retryable(make_ctx: Callable[..., ActionContext]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now.
    with pytest.raises(ActionError) as caught:
        action.run(params(url=f"http://127.0.0.1:{port}/"), make_ctx(timeout=2))
    assert caught.value.retryable and not isinstance(caught.value, ActionTimeout)
    assert "ConnectError" in caught.value.message


def test_output_is_truncated_and_a_large_json_body_is_not_parsed(
    recording_server: RecordingServer, make_ctx: Callable[..., ActionContext]
) -> None:
    recording_server.respond("GET", "/big", Reply(200, json={"data": "é" * 5000}))
    out = action.run(
        params(url=f"{recording_server.url}/big"), make_ctx(playbooks={"max_output_bytes": 256})
    )
    assert len(out.output.encode()) <= 256
    assert out.output.startswith('{"data": "')
    assert "json" not in out.result


def test_parameters_are_checked_with_clear_messages() -> None:
    assert params(method="patch", url="https://example.com/x").method == "PATCH"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": "ftp://example.com/"}, "http:// or https://"),
        ({"url": "https:///nohost"}, "no host"),
        ({"url": "http://a b/"}, "whitespace"),
        ({"url": "http://x/", "method": "TRACE"}, "method"),
        ({"url": "http://x/", "expect_status": 99}, "99 is not an HTTP status"),
        ({"url": "http://x/", "expect_status": []}, "at least one status"),
        ({"url": "http://x/", "headers": {"Bad Name": "v"}}, "not a valid header name"),
        ({"url": "http://x/", "timeout": 3}, "Extra inputs are not permitted"),
    ]
    for values, message in cases:
        with pytest.raises(ValidationError, match=message):
            params(**values)
    with pytest.raises(ValidationError) as caught:
        params(url="http://x/", headers={"X-Token": "secret\r\nInjected: 1"})
    assert "line break" in str(caught.value)
    with pytest.raises(ValidationError, match="must be printable ASCII"):
        params(url="http://x/", headers={"X-Token": "caf\u00e9\x01"})
    assert "secret" not in str(caught.value).split("input_value")[0]


def test_idempotent_follows_the_method_unless_the_step_says() -> None:
    assert action.idempotent(params(method="GET", url="http://x/"))
    assert action.idempotent(params(method="PUT", url="http://x/"))
    assert action.idempotent(params(method="DELETE", url="http://x/"))
    assert not action.idempotent(params(method="POST", url="http://x/"))
    assert not action.idempotent(params(method="PATCH", url="http://x/"))
    assert action.idempotent(params(method="POST", url="http://x/", idempotent=True))
    assert not action.idempotent(params(method="GET", url="http://x/", idempotent=False))
    text = action.describe(params(method="POST", url="http://x/h", body={"k": 1}))
    assert text == "POST http://x/h with a body (expecting any 2xx)"


def test_tls_is_verified_unless_the_step_says_not_to(
    tmp_path: Path, make_ctx: Callable[..., ActionContext]
) -> None:
    with RecordingServer(tls=self_signed_cert(tmp_path)) as server:
        url = f"{server.url}/secure"
        assert url.startswith("https://")
        with pytest.raises(ActionError) as caught:
            action.run(params(url=url), make_ctx())
        assert not caught.value.retryable
        assert "TLS certificate was rejected" in caught.value.message
        assert server.requests == []
        out = action.run(params(url=url, verify_tls=False), make_ctx())
        assert out.result["status"] == 200
        assert [r.path for r in server.requests] == ["/secure"]
