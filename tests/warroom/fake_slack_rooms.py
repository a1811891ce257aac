"""FakeSlack with what the war room calls: conversations.create, .invite, .archive and
.list (with each channel's creator), pins.add, and auth.test answering the granted
scopes in its `x-oauth-scopes` header. Faults can be aimed at one method."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.notify.fake_slack import (
    Answer,
    FakeSlack,
    Request,
    _error,
    _handler_for,
    _serve,
    _State,
)

BOT_USER = "UBOT0001"
ALL_SCOPES = "channels:manage,channels:read,channels:history,chat:write,pins:write,users:read"
_NAME = re.compile(r"[a-z0-9_-]{1,80}")


@dataclass
class Room:
    """A channel created through conversations.create (or made to look so)."""

    id: str
    name: str
    creator: str
    archived: bool = False
    members: list[str] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)


@dataclass
class _Rooms:
    rooms: dict[str, Room] = field(default_factory=dict)
    scopes: str = ALL_SCOPES
    # method -> Slack error codes to answer, one per request, before serving it.
    faults: dict[str, list[str]] = field(default_factory=dict)


class FakeSlackRooms(FakeSlack):
    """FakeSlack that can also make, fill, pin and archive channels."""

    def __init__(self, token: str = "xoxb-test-token", scopes: str = ALL_SCOPES) -> None:
        super().__init__(token)
        self._rooms = _Rooms(scopes=scopes)

    def __enter__(self) -> FakeSlackRooms:
        self._server = ThreadingHTTPServer(
            ("127.0.0.1", 0), _rooms_handler(self._state, self._rooms)
        )
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def fail_method(self, method: str, error: str, count: int = 1) -> None:
        """Answer the next `count` calls of `method` with this Slack error."""
        with self._state.lock:
            self._rooms.faults.setdefault(method, []).extend([error] * count)

    def add_room(self, name: str, creator: str) -> str:
        """A channel someone (`creator`) already made."""
        channel_id = self.add_channel(name)
        with self._state.lock:
            self._rooms.rooms[channel_id] = Room(channel_id, name, creator)
        return channel_id

    @property
    def rooms(self) -> list[Room]:
        """The channels made through conversations.create, in order."""
        with self._state.lock:
            return [r for r in self._rooms.rooms.values() if r.creator == BOT_USER]


def _rooms_handler(state: _State, rooms: _Rooms) -> type[BaseHTTPRequestHandler]:
    base: Any = _handler_for(state)

    class Handler(base):  # type: ignore[misc]
        def _handle(self, method: str, body: dict[str, Any]) -> None:
            if method not in _METHODS:
                super()._handle(method, body)
                return
            with state.lock:
                state.requests.append(Request(method, self.path, dict(self.headers), body))
                queued = rooms.faults.get(method) or []
                fault = queued.pop(0) if queued else None
            if fault is not None:
                status, payload, headers = _error(fault)
            else:
                status, payload, headers = _serve_rooms(state, rooms, method, self.headers, body)
            self._send(status, json.dumps(payload).encode(), "application/json", headers)

    return Handler


def _serve_rooms(
    state: _State, rooms: _Rooms, method: str, headers: Any, body: dict[str, Any]
) -> Answer:
    # The token check of the base fake: ask it about a method it does not serve.
    status, payload, _ = _serve(state, "auth.check", headers, body)
    if payload.get("error") != "unknown_method":
        return status, payload, {}
    with state.lock:
        if method == "auth.test":
            answer = {"ok": True, "user_id": BOT_USER, "bot_id": "B0001", "team": "T1"}
            return 200, answer, {"x-oauth-scopes": rooms.scopes}
        if method == "conversations.create":
            return _create(state, rooms, str(body.get("name", "")))
        if method == "conversations.list":
            return _list(state, rooms, str(body.get("exclude_archived", "")) in ("1", "true"))
        room = rooms.rooms.get(str(body.get("channel", "")))
        if room is None:
            return _error("channel_not_found")
        if method == "conversations.archive":
            if room.archived:
                return _error("already_archived")
            room.archived = True
            return 200, {"ok": True}, {}
        if room.archived:
            return _error("is_archived")
        if method == "conversations.invite":
            users = [u for u in str(body.get("users", "")).split(",") if u]
            if all(u in room.members for u in users):
                return _error("already_in_channel")
            room.members += [u for u in users if u not in room.members]
            return 200, {"ok": True, "channel": {"id": room.id}}, {}
        ts = str(body.get("timestamp", ""))
        if (room.id, ts) not in state.messages:
            return _error("message_not_found")
        if ts in room.pins:
            return _error("already_pinned")
        room.pins.append(ts)
        return 200, {"ok": True}, {}


def _create(state: _State, rooms: _Rooms, name: str) -> Answer:
    if not _NAME.fullmatch(name):
        return _error("invalid_name_specials")
    if name in state.channels:
        return _error("name_taken")
    channel_id = f"C{len(state.channels) + 1:04d}"
    state.channels[name] = channel_id
    rooms.rooms[channel_id] = Room(channel_id, name, BOT_USER, members=[BOT_USER])
    channel = {"id": channel_id, "name": name, "creator": BOT_USER, "is_archived": False}
    return 200, {"ok": True, "channel": channel}, {}


def _list(state: _State, rooms: _Rooms, exclude_archived: bool) -> Answer:
    found = []
    for name, channel_id in state.channels.items():
        room = rooms.rooms.get(channel_id)
        if exclude_archived and room is not None and room.archived:
            continue
        creator = room.creator if room is not None else "U0ADMIN"
        archived = room.archived if room is not None else False
        found.append({"id": channel_id, "name": name, "creator": creator, "is_archived": archived})
    return 200, {"ok": True, "channels": found, "response_metadata": {}}, {}


_METHODS = frozenset(
    {
        "auth.test",
        "conversations.create",
        "conversations.list",
        "conversations.invite",
        "conversations.archive",
        "pins.add",
    }
)
