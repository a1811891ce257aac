"""`kubernetes.rollout_restart` and `kubernetes.scale`: act on a Deployment.

Both go through the official client, to the cluster `kube_client.find_cluster` finds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, ClassVar

from kubernetes.client import AppsV1Api
from pydantic import Field, field_validator, model_validator

from . import register
from .base import ActionContext, ActionResult, Params
from .kube_client import Deadline, kube_api, kube_errors

# What `kubectl rollout restart` sets: a new pod template makes a new rollout.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_MAX_REPLICAS = 50

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAMESPACE = re.compile(rf"^{_LABEL}$")
_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def check_namespace(value: str) -> str:
    """A namespace name (a DNS label), or a ValueError saying what a valid one is."""
    if len(value) > 63 or not _NAMESPACE.match(value):
        raise ValueError(
            f"{value!r} is not a namespace name: lowercase letters, digits and '-', "
            "at most 63, starting and ending with a letter or digit"
        )
    return value


def check_name(value: str) -> str:
    """An object name (a DNS subdomain), or a ValueError saying what a valid one is."""
    if len(value) > 253 or not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes object name: lowercase letters, digits, '-' "
            "and '.', starting and ending with a letter or digit"
        )
    return value


class DeploymentParams(Params):
    """A Deployment, by namespace and name."""

    namespace: str
    deployment: str

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        return check_namespace(value)

    @field_validator("deployment")
    @classmethod
    def _check_deployment(cls, value: str) -> str:
        return check_name(value)


class RolloutRestart:
    """Restart a Deployment's pods the way `kubectl rollout restart` does."""

    name: ClassVar[str] = "kubernetes.rollout_restart"
    params: ClassVar[type[Params]] = DeploymentParams

    def idempotent(self, params: DeploymentParams) -> bool:
        """A second restart is one more rolling restart: harmless."""
        return True

    def describe(self, params: DeploymentParams) -> str:
        """E.g. "restart deployment shop/checkout (rolling)"."""
        return f"restart deployment {params.namespace}/{params.deployment} (rolling)"

    def run(self, params: DeploymentParams, ctx: ActionContext) -> ActionResult:
        """Patch the pod template's restartedAt annotation to now."""
        now = ctx.now() if ctx.now is not None else datetime.now(UTC)
        # A naive clock is taken to be UTC, as the database's times are.
        now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        target = f"deployment {params.namespace}/{params.deployment}"
        with kube_api(ctx) as api, kube_errors(target):
            AppsV1Api(api).patch_namespaced_deployment(
                params.deployment,
                params.namespace,
                body,
                _content_type=STRATEGIC_MERGE,
                _request_timeout=ctx.timeout,
            )
        result = {
            "namespace": params.namespace,
            "deployment": params.deployment,
            "restarted_at": stamp,
        }
        return ActionResult(result=result, output=f"{target} restarted at {stamp}")


class ScaleParams(DeploymentParams):
    """A Deployment, and its new replica count: absolute, or relative with `by`."""

    replicas: int | None = Field(default=None, ge=0)
    by: int | None = None
    # The most replicas this step may leave; a relative step stops there.
    max_replicas: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> ScaleParams:
        if (self.replicas is None) == (self.by is None):
            raise ValueError("give exactly one of replicas (absolute) or by (relative)")
        if self.by == 0:
            raise ValueError("by must not be 0")
        if self.replicas is not None and self.replicas > self.cap:
            raise ValueError(
                f"replicas {self.replicas} is above max_replicas {self.cap}; "
                "raise max_replicas to allow it"
            )
        return self

    @property
    def cap(self) -> int:
        """The replica count this step may not exceed."""
        return DEFAULT_MAX_REPLICAS if self.max_replicas is None else self.max_replicas


class Scale:
    """Set a Deployment's replica count through its scale subresource."""

    name: ClassVar[str] = "kubernetes.scale"
    params: ClassVar[type[Params]] = ScaleParams

    def idempotent(self, params: ScaleParams) -> bool:
        """Setting a count is; adding to it is not."""
        return params.by is None

    def describe(self, params: ScaleParams) -> str:
        """E.g. "scale deployment shop/checkout by +2 (at most 50 replicas)"."""
        target = f"deployment {params.namespace}/{params.deployment}"
        if params.replicas is not None:
            return f"scale {target} to {params.replicas} replicas"
        return f"scale {target} by {params.by:+d} (at most {params.cap} replicas)"

    def run(self, params: ScaleParams, ctx: ActionContext) -> ActionResult:
        """Read the current count, then patch spec.replicas when it changes."""
        target = f"deployment {params.namespace}/{params.deployment}"
        deadline = Deadline(ctx.timeout)
        with kube_api(ctx) as api, kube_errors(target):
            apps = AppsV1Api(api)
            scale = apps.read_namespaced_deployment_scale(
                params.deployment, params.namespace, _request_timeout=deadline.left()
            )
            current = int(scale.spec.replicas or 0) if scale.spec is not None else 0
            wanted, capped = _target(params, current)
            body: dict[str, Any] = {"spec": {"replicas": wanted}}
            if params.by is not None and scale.metadata is not None:
                # A relative step is conditional on the count it read: if someone scaled
                # in between, the API answers 409 and a retry reads the count again.
                body["metadata"] = {"resourceVersion": scale.metadata.resource_version}
            if wanted != current:
                apps.patch_namespaced_deployment_scale(
                    params.deployment,
                    params.namespace,
                    body,
                    _content_type=MERGE_PATCH,
                    _request_timeout=deadline.left(),
                )
        result: dict[str, Any] = {"from": current, "to": wanted}
        if capped:
            result["capped_at"] = params.cap
        note = f" (capped at max_replicas {params.cap})" if capped else ""
        return ActionResult(result=result, output=f"{target}: {current} -> {wanted} replicas{note}")


def _target(params: ScaleParams, current: int) -> tuple[int, bool]:
    """The new replica count, and whether max_replicas bounded it."""
    if params.replicas is not None:
        return params.replicas, False
    assert params.by is not None
    wanted = current + params.by
    if wanted < 0:
        return 0, False
    if wanted > params.cap:
        # Never below the current count: a step asked to add replicas must not remove any.
        return max(current, params.cap), True
    return wanted, False


register(RolloutRestart())
register(Scale())
