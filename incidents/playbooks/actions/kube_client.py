"""How the Kubernetes actions find their cluster, and what its errors mean for a step.

The cluster is, in this order (the first that is there wins):

1. `playbooks.kubernetes.kubeconfig` (with `playbooks.kubernetes.context`, if set);
2. the files in `$KUBECONFIG`;
3. the pod's service account, when running in a cluster (`KUBERNETES_SERVICE_HOST`);
4. `~/.kube/config`.

Each step builds its own client configuration: the `kubernetes` package's global default
is never read or set, so two steps (or two tests) cannot leak a cluster into each other.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3.exceptions
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException, load_kube_config
from kubernetes.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_HOST_ENV_NAME,
    SERVICE_PORT_ENV_NAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)

from ..settings import KubernetesSettings
from .base import ActionContext, ActionError, ActionTimeout

NO_CLUSTER = (
    "no Kubernetes cluster configured: set playbooks.kubernetes.kubeconfig or KUBECONFIG, "
    "or run in a cluster"
)


@dataclass(frozen=True)
class ServiceAccount:
    """Where a pod finds its service account's token and the cluster's CA certificate."""

    token_path: str = SERVICE_TOKEN_FILENAME
    ca_path: str = SERVICE_CERT_FILENAME


# Where a pod's files are; tests point it elsewhere.
DEFAULT_SERVICE_ACCOUNT = ServiceAccount()


@dataclass(frozen=True)
class Cluster:
    """A client configuration, and where it came from (for messages)."""

    configuration: Configuration
    source: str


def find_cluster(
    settings: KubernetesSettings,
    *,
    environ: Mapping[str, str] | None = None,
    service_account: ServiceAccount | None = None,
) -> Cluster:
    """The cluster the settings and the environment point at, or an ActionError."""
    env = os.environ if environ is None else environ
    context = settings.context or None
    if settings.kubeconfig:
        path = os.path.expanduser(settings.kubeconfig)
        if not os.path.isfile(path):
            raise ActionError(f"playbooks.kubernetes.kubeconfig: no such file: {path}")
        return _from_kubeconfig(path, context, f"playbooks.kubernetes.kubeconfig ({path})")
    if env.get("KUBECONFIG"):
        return _from_kubeconfig(env["KUBECONFIG"], context, "KUBECONFIG")
    in_cluster_problem = ""
    if env.get(SERVICE_HOST_ENV_NAME) and env.get(SERVICE_PORT_ENV_NAME):
        account = service_account or DEFAULT_SERVICE_ACCOUNT
        configuration = _fresh_configuration()
        loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=account.token_path, cert_filename=account.ca_path, environ=env
        )
        try:
            loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
        except ConfigException as exc:
            in_cluster_problem = f" (the in-cluster service account is unusable: {exc})"
        else:
            return Cluster(configuration, "in-cluster service account")
    home = env.get("HOME") or os.path.expanduser("~")
    default = os.path.join(home, ".kube", "config")
    if os.path.isfile(default):
        return _from_kubeconfig(default, context, default)
    raise ActionError(NO_CLUSTER + in_cluster_problem)


def _fresh_configuration() -> Configuration:
    """A configuration of our own; urllib3 does not retry, the playbook's retry policy does."""
    configuration = Configuration()
    configuration.retries = False
    return configuration


def _from_kubeconfig(files: str, context: str | None, source: str) -> Cluster:
    """Load a kubeconfig (or a KUBECONFIG list of them) into a fresh configuration."""
    configuration = _fresh_configuration()
    try:
        # persist_config=False: never write refreshed credentials back into the file.
        load_kube_config(  # type: ignore[no-untyped-call]
            config_file=files,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        raise ActionError(f"cannot use the kubeconfig from {source}: {exc}") from None
    return Cluster(configuration, source)


@contextmanager
def kube_api(ctx: ActionContext) -> Iterator[ApiClient]:
    """An API client for this step's cluster, closed afterwards."""
    cluster = find_cluster(ctx.settings.playbooks.kubernetes)
    client = ApiClient(cluster.configuration)
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]


class Deadline:
    """The time left of a step that makes several API calls."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left for the next call; ActionTimeout when none are."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise ActionTimeout(f"the step ran past its timeout of {self.seconds:g} s")
        return left


def status_message(exc: ApiException) -> str:
    """The `message` of the Status object the API answered with, else its reason."""
    try:
        body: Any = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return str(exc.reason or "").strip() or f"HTTP {exc.status}"


@contextmanager
def kube_errors(target: str) -> Iterator[None]:
    """Turn the client's exceptions into ActionErrors; `target` names what was acted on."""
    try:
        yield
    except ApiException as exc:
        raise from_api_exception(exc, target) from None
    except urllib3.exceptions.NewConnectionError as exc:
        # A subclass of urllib3's TimeoutError, but a refused connection is no timeout.
        raise ActionError(f"cannot reach the Kubernetes API: {exc}", retryable=True) from None
    except urllib3.exceptions.TimeoutError as exc:
        raise ActionTimeout(f"the Kubernetes API did not answer in time: {exc}") from None
    except urllib3.exceptions.HTTPError as exc:
        raise ActionError(
            f"cannot reach the Kubernetes API: {type(exc).__name__}: {exc}", retryable=True
        ) from None


def from_api_exception(exc: ApiException, target: str) -> ActionError:
    """What an API error means for the step: whether another attempt could help."""
    status = int(exc.status or 0)
    message = status_message(exc)
    result = {"status": status}
    if status == 404:
        return ActionError(f"{target} not found: {message}", result=result)
    if status in (401, 403):
        return ActionError(f"forbidden: {message}", result=result)
    if status in (409, 429) or status >= 500:
        return ActionError(f"{target}: {status} {message}", retryable=True, result=result)
    if status == 0:
        # The client reports TLS failures this way; a bad certificate stays bad.
        return ActionError(f"cannot reach the Kubernetes API: {message}", result=result)
    return ActionError(f"{target}: the API refused: {status} {message}", result=result)
