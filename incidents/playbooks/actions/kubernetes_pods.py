"""`kubernetes.delete_pod`: delete a pod by name, or the unhealthy pods a selector matches.

Its controller (a Deployment's ReplicaSet, a StatefulSet) starts a fresh pod in its place.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException
from pydantic import Field, field_validator, model_validator

from . import register
from .base import ActionContext, ActionError, ActionResult, Params
from .kube_client import Deadline, kube_api, kube_errors
from .kubernetes_actions import check_name, check_namespace


class DeletePodParams(Params):
    """Which pods: one by `name`, or those `label_selector` matches."""

    namespace: str
    name: str | None = None
    label_selector: str | None = None
    # Delete only pods that are not healthy (see `unhealthy`). None: yes with a
    # label_selector, no with a name.
    unhealthy_only: bool | None = None
    grace_period_seconds: int | None = Field(default=None, ge=0, le=3600)
    # The most pods one step may delete: a selector matching more fails the step.
    max_pods: int = Field(default=10, ge=1, le=1000)

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        return check_namespace(value)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @field_validator("label_selector")
    @classmethod
    def _check_selector(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("label_selector is empty: it would match every pod")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> DeletePodParams:
        if (self.name is None) == (self.label_selector is None):
            raise ValueError("give exactly one of name or label_selector")
        return self

    @property
    def only_unhealthy(self) -> bool:
        """Whether healthy pods are left alone."""
        if self.unhealthy_only is not None:
            return self.unhealthy_only
        return self.label_selector is not None


def unhealthy(pod: Any) -> bool:
    """Not Ready, crash-looping or restarting, Failed or Unknown; a finished pod is not."""
    status = pod.status
    if status is None:
        return False
    if status.phase in ("Failed", "Unknown"):
        return True
    if status.phase == "Succeeded":
        return False
    for container in [*(status.init_container_statuses or []), *(status.container_statuses or [])]:
        waiting = container.state.waiting if container.state is not None else None
        if waiting is not None and (
            waiting.reason == "CrashLoopBackOff" or (container.restart_count or 0) > 0
        ):
            return True
    ready = [c.status for c in status.conditions or [] if c.type == "Ready"]
    return ready != ["True"]


class DeletePod:
    """Delete pods so that their controller replaces them."""

    name: ClassVar[str] = "kubernetes.delete_pod"
    params: ClassVar[type[Params]] = DeletePodParams

    def idempotent(self, params: DeletePodParams) -> bool:
        """A pod already deleted counts as deleted."""
        return True

    def describe(self, params: DeletePodParams) -> str:
        """E.g. "delete the unhealthy pods matching app=checkout in shop (at most 10)"."""
        if params.name is not None:
            text = f"delete pod {params.namespace}/{params.name}"
            text += " if it is unhealthy" if params.only_unhealthy else ""
        else:
            which = "unhealthy pods" if params.only_unhealthy else "pods"
            text = (
                f"delete the {which} matching {params.label_selector} in {params.namespace} "
                f"(at most {params.max_pods})"
            )
        if params.grace_period_seconds is not None:
            text += f", grace period {params.grace_period_seconds} s"
        return text

    def run(self, params: DeletePodParams, ctx: ActionContext) -> ActionResult:
        """Choose the pods, then delete them; a pod that is already gone counts as done."""
        deadline = Deadline(ctx.timeout)
        with kube_api(ctx) as api:
            core = CoreV1Api(api)
            chosen, skipped = _choose(core, params, deadline)
            deleted: list[str] = []
            gone: list[str] = []
            try:
                for name in chosen:
                    if _delete(core, params, name, deadline):
                        deleted.append(name)
                    else:
                        gone.append(name)
            except ActionError as exc:
                exc.result = {**exc.result, "deleted": deleted, "already_gone": gone}
                raise
        result = {"deleted": [*deleted, *gone], "already_gone": gone, "skipped_healthy": skipped}
        lines = [f"deleted pod {params.namespace}/{n}" for n in deleted]
        lines += [f"pod {params.namespace}/{n} was already gone" for n in gone]
        if skipped:
            lines.append(f"left {skipped} healthy pod(s) alone")
        return ActionResult(result=result, output="\n".join(lines) or "no pod to delete")


def _choose(core: CoreV1Api, params: DeletePodParams, deadline: Deadline) -> tuple[list[str], int]:
    """The names of the pods to delete, and how many healthy ones were left alone."""
    if params.name is not None:
        if not params.only_unhealthy:
            return [params.name], 0
        with kube_errors(f"pod {params.namespace}/{params.name}"):
            try:
                pod = core.read_namespaced_pod(
                    params.name, params.namespace, _request_timeout=deadline.left()
                )
            except ApiException as exc:
                if exc.status == 404:
                    return [params.name], 0
                raise
        return ([params.name], 0) if unhealthy(pod) else ([], 1)
    with kube_errors(f"pods {params.label_selector!r} in namespace {params.namespace}"):
        pods = core.list_namespaced_pod(
            params.namespace,
            label_selector=params.label_selector,
            _request_timeout=deadline.left(),
        )
    chosen: list[str] = []
    skipped = 0
    for pod in pods.items or []:
        if pod.metadata is None or pod.metadata.deletion_timestamp is not None:
            continue  # already on its way out
        if params.only_unhealthy and not unhealthy(pod):
            skipped += 1
        else:
            chosen.append(str(pod.metadata.name))
    if len(chosen) > params.max_pods:
        raise ActionError(
            f"{len(chosen)} pods match {params.label_selector!r} in {params.namespace}, more "
            f"than max_pods {params.max_pods}: nothing was deleted",
            result={"matched": len(chosen), "max_pods": params.max_pods},
        )
    return sorted(chosen), skipped


def _delete(core: CoreV1Api, params: DeletePodParams, name: str, deadline: Deadline) -> bool:
    """Delete one pod: True when deleted now, False when it was already gone."""
    with kube_errors(f"pod {params.namespace}/{name}"):
        try:
            core.delete_namespaced_pod(
                name,
                params.namespace,
                grace_period_seconds=params.grace_period_seconds,
                _request_timeout=deadline.left(),
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
    return True


register(DeletePod())
