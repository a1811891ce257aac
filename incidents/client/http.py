"""A small synchronous HTTP client of the API that turns every failure into one line.

ClientError          any failure the command reports and exits 1 on
├── Unreachable      no HTTP answer: refused, timed out, name not found
└── ServerError      an HTTP error status; `message` is the server's own message
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from incidents import __version__
from incidents.client.connection import Connection

DEFAULT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0


class ClientError(Exception):
    """A failure to report as one line on stderr, exiting 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unreachable(ClientError):
    """The service gave no HTTP answer."""


class ServerError(ClientError):
    """The service answered with an error status."""

    def __init__(self, status: int, message: str, details: list[str]) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting"
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "host name not found"
    # "[Errno 113] No route to host" -> "no route to host"
    return text.split("] ", 1)[-1].lower() if text.startswith("[Errno") else text


def error_of(response: httpx.Response) -> ServerError:
    """The server's message of an error answer, with the problems it listed."""
    status = response.status_code
    details: list[str] = []
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
        for problem in body.get("errors") or []:
            if isinstance(problem, dict) and "message" in problem:
                details.append(f"{problem.get('field', 'request')}: {problem['message']}")
    elif isinstance(body, str):
        message = body  # the Alertmanager-shaped API answers errors as a JSON string
    else:
        # Not ours: a proxy's page, say. Plain text is shown; a page of HTML is not.
        media = response.headers.get("content-type", "")
        first = response.text.strip().splitlines()[:1]
        plain = media.startswith("text/plain") and first
        message = first[0][:300] if plain else (response.reason_phrase or "error")
    if len(details) <= 1:
        details = []
    return ServerError(status, f"{message} (HTTP {status})", details)


class ApiClient:
    """The API at one base URL, with one key; close it, or use it as a context manager."""

    def __init__(self, connection: Connection, timeout: float = DEFAULT_TIMEOUT) -> None:
        headers = {"User-Agent": f"incidents-cli/{__version__}", "Accept": "application/json"}
        if connection.key:
            headers["Authorization"] = f"Bearer {connection.key}"
        self.base_url = connection.url
        self.timeout = timeout
        self.sends_key = bool(connection.key)
        self._http = httpx.Client(
            base_url=connection.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            trust_env=False,  # an operator's HTTP(S)_PROXY must not swallow a local URL
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        body: Any = None,
        accept: str = "application/json",
    ) -> httpx.Response:
        """One request; a ClientError unless the answer is a 2xx."""
        try:
            response = self._http.request(
                method, path, params=params, json=body, headers={"Accept": accept}
            )
        except httpx.ReadTimeout:
            raise Unreachable(
                f"{self.base_url} did not answer within {self.timeout:g} s (--timeout)"
            ) from None
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.base_url}: {_reason(exc)}") from None
        if response.is_error:
            error = error_of(response)
            if error.status == 401 and not self.sends_key:
                error.details.append(
                    "no key was sent: give it with --key, INCIDENTS_KEY or the client config file"
                )
            raise error
        return response

    def json(self, method: str, path: str, *, params: Any = None, body: Any = None) -> Any:
        """One request whose answer is JSON."""
        response = self.send(method, path, params=params, body=body)
        try:
            return response.json()
        except json.JSONDecodeError:
            raise ClientError(
                f"{self.base_url}{path}: the answer is not JSON; is this the incidents API?"
            ) from None

    def get(self, path: str, params: Any = None) -> Any:
        """GET, answering JSON."""
        return self.json("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        """POST a JSON body, answering JSON."""
        return self.json("POST", path, body=body)

    def delete(self, path: str) -> Any:
        """DELETE, answering JSON."""
        return self.json("DELETE", path)
