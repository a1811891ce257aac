"""A local stand-in for Slack's Web API, for tests that drive the real `slack_sdk.WebClient`.

It serves `chat.postMessage` and `chat.update` on 127.0.0.1 the way Slack does: form or
JSON bodies, a bearer token check, message metadata, and the reads a sender uses to check
what it posted (`conversations.list`, `conversations.history`, `conversations.replies`,
newest first, metadata only with `include_all_metadata`), `{"ok": true, "channel": "C…",
"ts": "…"}` answers,
Slack error codes in `{"ok": false, "error": …}`, and a few Block Kit limits. It records
every request, and can be told to fail the next requests (429, 5xx, a Slack error, a
stall) so retry and error handling can be tested against real HTTP.

    with FakeSlack() as slack:
        settings = SlackSettings(bot_token=slack.token, api_url=slack.api_url)
        slack.fail_next(status=429, retry_after=3)
        ...
        slack.calls("chat.postMessage")[0].body["blocks"]

Channels are known by name and id: `#incidents` (C0001), `#incidents-critical` (C0002)
and whatever `add_channel` adds. Anything else answers `channel_not_found`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

DEFAULT_TOKEN = "xoxb-test-token"
DEFAULT_CHANNELS = ("incidents", "incidents-critical")
# Form fields Slack takes as JSON text inside a form body.
_JSON_FIELDS = ("blocks", "attachments", "metadata")


@dataclass(frozen=True)
class Request:
    """One request as the fake received it."""

    method: str  # the API method, e.g. "chat.postMessage"
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    # When it arrived (time.time(), once its body was read): benchmarks time deliveries.
    at: float = field(default_factory=time.time)


@dataclass
class Message:
    """A message the fake holds, as the last post or update left it."""

    channel: str
    ts: str
    body: dict[str, Any]
    thread_ts: str | None = None
    edits: int = 0


@dataclass
class _Fault:
    status: int
    error: str | None
    retry_after: float | None
    delay: float


@dataclass
class _State:
    token: str
    channels: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    messages: dict[tuple[str, str], Message] = field(default_factory=dict)
    faults: list[_Fault] = field(default_factory=list)
    last_ts: float = 0.0
    # Seconds to wait after serving a request before answering it (a send in doubt).
    answer_delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeSlack:
    """A threaded HTTP server on 127.0.0.1 that answers like Slack's Web API."""

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        """A fake accepting `token`, with the default channels; start it with `with`."""
        self.token = token
        self._state = _State(token=token)
        for name in DEFAULT_CHANNELS:
            self.add_channel(name)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> FakeSlack:
        state = self._state
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
        self._server.daemon_threads = True
        # A short poll so `shutdown()` returns at once: tests start one fake each.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def api_url(self) -> str:
        """The base URL to give `WebClient(base_url=…)`, ending in `/api/`."""
        assert self._server is not None, "use FakeSlack as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/"

    # Setup -------------------------------------------------------------------------

    def add_channel(self, name: str) -> str:
        """Make a channel known (by name, without `#`) and return its id."""
        with self._state.lock:
            channel_id = f"C{len(self._state.channels) + 1:04d}"
            self._state.channels[name.lstrip("#")] = channel_id
            return channel_id

    def channel_id(self, name: str) -> str:
        """The id of a known channel."""
        return self._state.channels[name.lstrip("#")]

    def fail_next(
        self,
        count: int = 1,
        *,
        after: int = 0,
        status: int = 200,
        error: str | None = None,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `count` requests with this failure instead of serving them.

        `status=429` answers `ratelimited` with `Retry-After` (default 3); `status=500`
        (or any 5xx) an HTML error page; `error="is_archived"` a 200 with that Slack
        error; `delay` stalls that long first (then serves normally if nothing else is set).
        """
        if status == 429:
            error = error or "ratelimited"
            retry_after = 3 if retry_after is None else retry_after
        fault = _Fault(status=status, error=error, retry_after=retry_after, delay=delay)
        through = _Fault(status=200, error=None, retry_after=None, delay=0.0)
        with self._state.lock:
            self._state.faults.extend([through] * after + [fault] * count)

    def answer_late(self, seconds: float) -> None:
        """Serve each request at once but answer only after `seconds` (0: at once)."""
        self._state.answer_delay = seconds

    # Inspection --------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        """Every request received, in order (including failed ones)."""
        with self._state.lock:
            return list(self._state.requests)

    def calls(self, method: str) -> list[Request]:
        """The requests for one API method, e.g. `chat.update`."""
        return [r for r in self.requests if r.method == method]

    def message(self, channel: str, ts: str) -> Message:
        """A message as it stands now, by channel id or name and ts."""
        channel = self._state.channels.get(channel.lstrip("#"), channel)
        with self._state.lock:
            return self._state.messages[(channel, ts)]

    def top_level(self) -> list[Message]:
        """The messages posted outside any thread (broadcast replies not counted)."""
        with self._state.lock:
            return [m for m in self._state.messages.values() if m.thread_ts is None]

    def replies(self, channel: str, ts: str) -> list[Message]:
        """The replies in one message's thread, oldest first."""
        channel = self._state.channels.get(channel.lstrip("#"), channel)
        with self._state.lock:
            return [
                m
                for m in self._state.messages.values()
                if m.channel == channel and m.thread_ts == ts
            ]


# The Slack side ----------------------------------------------------------------------

Answer = tuple[int, dict[str, Any], dict[str, str]]


def _handler_for(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            self._handle(path.rsplit("/", 1)[-1], dict(parse_qsl(query)))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            method = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
            self._handle(method, _parse_body(self.headers.get("Content-Type", ""), raw))

        def _handle(self, method: str, body: dict[str, Any]) -> None:
            with state.lock:
                state.requests.append(Request(method, self.path, dict(self.headers), body))
                fault = state.faults.pop(0) if state.faults else None
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and (fault.status != 200 or fault.error):
                self._fault(fault)
                return
            status, payload, headers = _serve(state, method, self.headers, body)
            if state.answer_delay:
                time.sleep(state.answer_delay)
            self._send(status, json.dumps(payload).encode(), "application/json", headers)

        def _fault(self, fault: _Fault) -> None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            if fault.status >= 500:
                page = b"<html><body>Internal Server Error</body></html>"
                self._send(fault.status, page, "text/html", headers)
                return
            payload = {"ok": False, "error": fault.error or "unknown_error"}
            self._send(fault.status, json.dumps(payload).encode(), "application/json", headers)

        def _send(self, status: int, data: bytes, kind: str, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            # The client may have given up (a timeout test); Slack would not notice either.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            # Quiet: pytest output is for failures, not access logs.
            return

    return Handler


def _parse_body(content_type: str, raw: bytes) -> dict[str, Any]:
    text = raw.decode("utf-8")
    if content_type.startswith("application/json"):
        parsed = json.loads(text) if text else {}
        return parsed if isinstance(parsed, dict) else {"_": parsed}
    body: dict[str, Any] = dict(parse_qsl(text, keep_blank_values=True))
    for name in _JSON_FIELDS:
        if isinstance(body.get(name), str):
            # Bad JSON stays text, so the block check answers invalid_blocks as Slack does.
            with contextlib.suppress(json.JSONDecodeError):
                body[name] = json.loads(body[name])
    return body


def _serve(state: _State, method: str, headers: Any, body: dict[str, Any]) -> Answer:
    auth = headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
    token = token or str(body.get("token", ""))
    if not token:
        return _error("not_authed")
    if token != state.token:
        return _error("invalid_auth")
    if method == "conversations.list":
        with state.lock:
            found = [{"id": i, "name": name} for name, i in state.channels.items()]
        return 200, {"ok": True, "channels": found, "response_metadata": {}}, {}
    if method in ("conversations.history", "conversations.replies"):
        return _read(state, method, body)
    if method not in ("chat.postMessage", "chat.update"):
        return _error("unknown_method")
    target = str(body.get("channel", ""))
    with state.lock:
        channel = state.channels.get(target.lstrip("#"))
        if channel is None and target in state.channels.values():
            channel = target
    if channel is None:
        return _error("channel_not_found")
    if not body.get("text") and not body.get("blocks") and not body.get("attachments"):
        return _error("no_text")
    problem = _check_blocks(body.get("blocks"))
    if problem:
        return _error("invalid_blocks", problem)
    if method == "chat.update":
        return _update(state, channel, body)
    return _post(state, channel, body)


def _post(state: _State, channel: str, body: dict[str, Any]) -> Answer:
    thread_ts = body.get("thread_ts") or None
    with state.lock:
        # Like Slack's: the posting time, unique within the channel.
        state.last_ts = max(time.time(), state.last_ts + 0.000001)
        ts = f"{state.last_ts:.6f}"
        state.messages[(channel, ts)] = Message(channel, ts, body, thread_ts=thread_ts)
    return 200, {"ok": True, "channel": channel, "ts": ts, "message": _echo(body, ts)}, {}


def _update(state: _State, channel: str, body: dict[str, Any]) -> Answer:
    ts = str(body.get("ts", ""))
    with state.lock:
        message = state.messages.get((channel, ts))
        if message is None:
            return _error("message_not_found")
        message.body = {**message.body, **body}
        message.edits += 1
    answer = {"ok": True, "channel": channel, "ts": ts, "text": body.get("text", "")}
    return 200, {**answer, "message": _echo(body, ts)}, {}


def _read(state: _State, method: str, body: dict[str, Any]) -> Answer:
    """conversations.history (top-level messages) or .replies (a thread), newest first."""
    target = str(body.get("channel", ""))
    with state.lock:
        if target not in state.channels.values():
            return _error("channel_not_found")
        oldest = float(body.get("oldest") or 0)
        thread = body.get("ts") if method == "conversations.replies" else None
        found = [
            m
            for m in state.messages.values()
            if m.channel == target
            and float(m.ts) > oldest
            and (m.thread_ts == thread if thread else m.thread_ts is None)
        ]
    found.sort(key=lambda m: float(m.ts), reverse=True)
    with_meta = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
    out = []
    for m in found:
        shown = _echo(m.body, m.ts)
        if with_meta and isinstance(m.body.get("metadata"), dict):
            shown["metadata"] = m.body["metadata"]
        out.append(shown)
    return 200, {"ok": True, "messages": out, "has_more": False}, {}


def _check_blocks(blocks: Any) -> str | None:
    """The Block Kit limits a sloppy renderer hits first; None when the blocks pass."""
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "blocks must be a list of at most 50 blocks"
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or "type" not in block:
            return f"block {i} has no type"
        text = block.get("text") if isinstance(block.get("text"), dict) else {}
        if block["type"] == "header" and (not text or len(str(text.get("text", ""))) > 150):
            return f"header {i} must have a text of at most 150 characters"
        if block["type"] == "section" and text and len(str(text.get("text", ""))) > 3000:
            return f"section {i} text is longer than 3000 characters"
        if block["type"] == "actions":
            ids = [e.get("action_id") for e in block.get("elements", [])]
            if not ids or len(ids) > 25 or len(set(ids)) != len(ids):
                return f"actions {i} needs 1-25 elements with unique action_ids"
    return None


def _echo(body: dict[str, Any], ts: str) -> dict[str, Any]:
    return {"type": "message", "ts": ts, "text": body.get("text", ""), "bot_id": "B0001"}


def _error(code: str, detail: str | None = None) -> Answer:
    payload: dict[str, Any] = {"ok": False, "error": code}
    if detail:
        payload["response_metadata"] = {"messages": [f"[ERROR] {detail}"]}
    return 200, payload, {}
