"""A local stand-in for the Kubernetes API, for tests that drive the official client.

It serves the paths the Kubernetes actions use, with the objects and `Status` errors the
real API server answers with, and records every request:

    GET/PATCH  /apis/apps/v1/namespaces/{ns}/deployments/{name}
    GET/PATCH  /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale
    GET        /api/v1/namespaces/{ns}/pods?labelSelector=...
    GET/DELETE /api/v1/namespaces/{ns}/pods/{name}

    with KubeStandIn() as kube:
        kube.add_deployment("shop", "checkout", replicas=2)
        config = write_kubeconfig(tmp_path, kube.url, kube.token)
        kube.fail("PATCH", "/apis/apps/v1/namespaces/shop/deployments/checkout", 503)

Patches are applied as a JSON merge (enough for the actions' patches); a patch that names
a `metadata.resourceVersion` other than the object's answers 409, as the API does.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "standin-bearer-token"
_DEPLOYMENT = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)(/scale)?$")
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?$")
_REASONS = {404: "NotFound", 409: "Conflict", 401: "Unauthorized", 403: "Forbidden"}


@dataclass(frozen=True)
class KubeRequest:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any  # parsed JSON, or None
    authorization: str


def status_object(code: int, message: str, **details: Any) -> dict[str, Any]:
    """A `Status` failure object, as the API server sends with an error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "InternalError"),
        "details": details,
        "code": code,
    }


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a JSON merge patch in place (None removes a key)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, comma separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        else:
            key, value = re.split("==?", term, maxsplit=1)
            if labels.get(key.strip()) != value.strip():
                return False
    return True


class KubeStandIn:
    """The stand-in server; a context manager."""

    def __init__(self, token: str = TOKEN, tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: a certificate and key file, to serve https as a cluster does."""
        self.token = token
        self._scheme = "https" if tls else "http"
        self._stalls: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._version = 100
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._requests: list[KubeRequest] = []
        self._failures: list[tuple[str, str, int]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """The API server's URL."""
        return f"{self._scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> KubeStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def requests(self) -> list[KubeRequest]:
        """Every request so far, in order."""
        with self._lock:
            return list(self._requests)

    def fail(self, method: str, path: str, code: int, times: int = 1) -> None:
        """Answer the next `times` requests for `method path` with a Status of `code`."""
        with self._lock:
            self._failures.extend([(method, path, code)] * times)

    def stall(self, method: str, path: str, seconds: float) -> None:
        """Answer `method path` only after `seconds` (to test timeouts)."""
        with self._lock:
            self._stalls[(method, path)] = seconds

    def stall_for(self, request: KubeRequest) -> float:
        """How long to hold the answer to this request."""
        with self._lock:
            return self._stalls.get((request.method, request.path), 0.0)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def add_deployment(self, namespace: str, name: str, replicas: int = 1) -> None:
        """A Deployment with a pod template."""
        self.deployments[(namespace, name)] = {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{name}",
                "resourceVersion": self._next_version(),
                "generation": 1,
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": name, "image": f"{name}:1"}]},
                },
            },
            "status": {"replicas": replicas, "readyReplicas": replicas},
        }

    def add_pod(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        *,
        ready: bool = True,
        phase: str = "Running",
        waiting: str | None = None,
        restarts: int = 0,
        terminating: bool = False,
    ) -> None:
        """A pod with one container, in the given state."""
        state: dict[str, Any] = (
            {"waiting": {"reason": waiting}}
            if waiting
            else {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
        )
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "uid": f"uid-{name}",
            "resourceVersion": self._next_version(),
        }
        if terminating:
            metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        self.pods[(namespace, name)] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": metadata,
            "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [
                    {
                        "name": "app",
                        "image": "app:1",
                        "imageID": "sha256:0",
                        "ready": ready,
                        "restartCount": restarts,
                        "state": state,
                    }
                ],
            },
        }

    def answer(self, request: KubeRequest) -> tuple[int, dict[str, Any]]:
        """The status and object for one request."""
        with self._lock:
            self._requests.append(request)
            for index, (method, path, code) in enumerate(self._failures):
                if (method, path) == (request.method, request.path):
                    del self._failures[index]
                    return code, status_object(code, f"stand-in told to answer {code}")
            # The scheme is case-insensitive: in-cluster clients send "bearer".
            scheme, _, token = request.authorization.partition(" ")
            if scheme.lower() != "bearer" or token != self.token:
                return 401, status_object(401, "Unauthorized")
            if found := _DEPLOYMENT.match(request.path):
                return self._deployment(request, *found.groups())
            if found := _PODS.match(request.path):
                return self._pods(request, found.group(1), found.group(2))
            return 404, status_object(404, "the server could not find the requested resource")

    def _deployment(
        self, request: KubeRequest, namespace: str, name: str, scale: str | None
    ) -> tuple[int, dict[str, Any]]:
        deployment = self.deployments.get((namespace, name))
        if deployment is None:
            message = f'deployments.apps "{name}" not found'
            return 404, status_object(404, message, name=name, group="apps", kind="deployments")
        if request.method == "PATCH":
            patch = dict(request.body or {})
            wanted = (patch.pop("metadata", None) or {}).get("resourceVersion")
            if wanted is not None and wanted != deployment["metadata"]["resourceVersion"]:
                message = (
                    f'Operation cannot be fulfilled on deployments.apps "{name}": the object '
                    "has been modified; please apply your changes to the latest version"
                )
                return 409, status_object(409, message, name=name, kind="deployments")
            if scale:
                patch = {"spec": {"replicas": (patch.get("spec") or {}).get("replicas")}}
            merge(deployment, patch)
            deployment["metadata"]["resourceVersion"] = self._next_version()
        elif request.method != "GET":
            return 405, status_object(405, f"{request.method} is not allowed here")
        if not scale:
            return 200, copy.deepcopy(deployment)
        return 200, {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": deployment["metadata"]["resourceVersion"],
            },
            "spec": {"replicas": deployment["spec"]["replicas"]},
            "status": {"replicas": deployment["status"]["replicas"], "selector": f"app={name}"},
        }

    def _pods(
        self, request: KubeRequest, namespace: str, name: str | None
    ) -> tuple[int, dict[str, Any]]:
        if name is None and request.method == "GET":
            selector = (request.query.get("labelSelector") or [""])[0]
            items = [
                copy.deepcopy(pod)
                for (ns, _), pod in sorted(self.pods.items())
                if ns == namespace and selector_matches(selector, pod["metadata"]["labels"])
            ]
            listing = {"resourceVersion": self._next_version()}
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": listing, "items": items}
        pod = self.pods.get((namespace, name or ""))
        if pod is None or request.method not in ("GET", "DELETE"):
            return 404, status_object(404, f'pods "{name}" not found', name=name, kind="pods")
        if request.method == "DELETE":
            del self.pods[(namespace, name or "")]
        return 200, copy.deepcopy(pod)


def _handler_for(standin: KubeStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = KubeRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                content_type=self.headers.get("Content-Type", ""),
                body=json.loads(raw) if raw else None,
                authorization=self.headers.get("Authorization", ""),
            )
            code, obj = standin.answer(request)
            time.sleep(standin.stall_for(request))
            data = json.dumps(obj).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _handle

    return Handler


def write_kubeconfig(
    folder: Path, server: str, token: str, *, name: str = "config", context: str = "standin"
) -> Path:
    """A kubeconfig whose current context `context` reaches `server` with a bearer token;
    a second context, `elsewhere`, points at a port nothing listens on."""
    path = folder / name
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "standin", "cluster": {"server": server}},
            {"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:9"}},
        ],
        "users": [{"name": "bot", "user": {"token": token}}],
        "contexts": [
            {"name": "standin", "context": {"cluster": "standin", "user": "bot"}},
            {"name": "elsewhere", "context": {"cluster": "elsewhere", "user": "bot"}},
        ],
        "current-context": context,
    }
    # JSON is YAML: the client reads either.
    path.write_text(json.dumps(config))
    return path
