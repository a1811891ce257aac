"""`kubernetes.rollout_restart` and `kubernetes.scale`: the requests the real client sends
to a stand-in API server, and what its errors mean for the step."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from incidents.playbooks.actions import get
from incidents.playbooks.actions.base import ActionContext, ActionError, ActionTimeout

from .kube_standin import KubeStandIn, write_kubeconfig

DEPLOYMENT = "/apis/apps/v1/namespaces/shop/deployments/checkout"
SCALE = DEPLOYMENT + "/scale"
restart = get("kubernetes.rollout_restart")
scale = get("kubernetes.scale")
assert restart is not None and scale is not None


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    """A stand-in API server with deployment shop/checkout at 2 replicas."""
    with KubeStandIn() as standin:
        standin.add_deployment("shop", "checkout", replicas=2)
        yield standin


@pytest.fixture
def kctx(
    kube: KubeStandIn, tmp_path: Path, make_ctx: Callable[..., ActionContext]
) -> Callable[..., ActionContext]:
    """Contexts whose settings point at the stand-in through a kubeconfig file."""

    def build(token: str | None = None, context: str = "", **fields: Any) -> ActionContext:
        path = write_kubeconfig(tmp_path, kube.url, token or kube.token)
        playbooks = {"kubernetes": {"kubeconfig": str(path), "context": context}}
        return make_ctx(playbooks=playbooks, **fields)

    return build


def restart_params(deployment: str = "checkout") -> Any:
    """Validated rollout_restart parameters for namespace shop."""
    return restart.params.model_validate({"namespace": "shop", "deployment": deployment})


def scale_params(**values: Any) -> Any:
    """Validated scale parameters for shop/checkout."""
    return scale.params.model_validate({"namespace": "shop", "deployment": "checkout", **values})


def test_rollout_restart_patches_the_template_annotation(
    kube: KubeStandIn, kctx: Callable[..., ActionContext]
) -> None:
    now = datetime(2026, 12, 6, 10, 30, 5, 123000, tzinfo=UTC)
    out = restart.run(restart_params(), kctx(now=lambda: now))
    assert out.result == {
        "namespace": "shop",
        "deployment": "checkout",
        "restarted_at": "2026-12-06T10:30:05Z",
    }
    [request] = kube.requests
    assert (request.method, request.path) == ("PATCH", DEPLOYMENT)
    assert request.content_type == "application/strategic-merge-patch+json"
    assert request.authorization == f"Bearer {kube.token}"
    assert request.body == {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-06T10:30:05Z"}
                }
            }
        }
    }
    template = kube.deployments[("shop", "checkout")]["spec"]["template"]
    assert template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert template["metadata"]["labels"] == {"app": "checkout"}
    assert restart.idempotent(restart_params())
    assert restart.describe(restart_params()) == "restart deployment shop/checkout (rolling)"


def test_a_missing_deployment_is_a_clear_final_error(
    kctx: Callable[..., ActionContext],
) -> None:
    with pytest.raises(ActionError) as caught:
        restart.run(restart_params("gone"), kctx())
    assert not caught.value.retryable
    assert caught.value.message == (
        'deployment shop/gone not found: deployments.apps "gone" not found'
    )


@pytest.mark.parametrize("status", [409, 429, 500, 503])
def test_conflicts_throttling_and_server_errors_are_retryable(
    status: int, kube: KubeStandIn, kctx: Callable[..., ActionContext]
) -> None:
    kube.fail("PATCH", DEPLOYMENT, status)
    with pytest.raises(ActionError) as caught:
        restart.run(restart_params(), kctx())
    assert caught.value.retryable
    assert caught.value.result == {"status": status}
    assert caught.value.message.startswith(f"deployment shop/checkout: {status} ")
    # The next attempt goes through.
    restart.run(restart_params(), kctx())


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_final(
    status: int, kube: KubeStandIn, kctx: Callable[..., ActionContext]
) -> None:
    kube.fail("PATCH", DEPLOYMENT, status)
    with pytest.raises(ActionError, match=r"^forbidden: ") as caught:
        restart.run(restart_params(), kctx())
    assert not caught.value.retryable
    # A wrong token is refused by the stand-in itself.
    with pytest.raises(ActionError, match=r"^forbidden: Unauthorized"):
        restart.run(restart_params(), kctx(token="wrong"))


def test_an_unreachable_api_server_is_retryable(kctx: Callable[..., ActionContext]) -> None:
    with pytest.raises(ActionError) as caught:
        restart.run(restart_params(), kctx(context="elsewhere"))
    assert caught.value.retryable
    assert caught.value.message.startswith("cannot reach the Kubernetes API")


def test_scale_to_an_absolute_count(kube: KubeStandIn, kctx: Callable[..., ActionContext]) -> None:
    out = scale.run(scale_params(replicas=5), kctx())
    assert out.result == {"from": 2, "to": 5}
    read, patch = kube.requests
    assert (read.method, read.path) == ("GET", SCALE)
    assert (patch.method, patch.path) == ("PATCH", SCALE)
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body == {"spec": {"replicas": 5}}
    assert kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 5
    assert scale.idempotent(scale_params(replicas=5))


def test_scale_relative_is_conditional_and_capped(
    kube: KubeStandIn, kctx: Callable[..., ActionContext]
) -> None:
    out = scale.run(scale_params(by=3, max_replicas=4), kctx())
    assert out.result == {"from": 2, "to": 4, "capped_at": 4}
    patch = kube.requests[-1]
    version = patch.body["metadata"]["resourceVersion"]
    assert patch.body == {"spec": {"replicas": 4}, "metadata": {"resourceVersion": version}}
    assert not scale.idempotent(scale_params(by=3))
    out = scale.run(scale_params(by=-10), kctx())
    assert out.result == {"from": 4, "to": 0}


def test_scale_relative_never_scales_down_at_the_cap(
    kube: KubeStandIn, kctx: Callable[..., ActionContext]
) -> None:
    kube.add_deployment("shop", "checkout", replicas=60)
    out = scale.run(scale_params(by=1), kctx())
    assert out.result == {"from": 60, "to": 60, "capped_at": 50}
    assert [r.method for r in kube.requests] == ["GET"]


def test_scale_that_raced_another_change_is_retryable(
    kube: KubeStandIn, kctx: Callable[..., ActionContext]
) -> None:
    kube.fail("PATCH", SCALE, 409)
    with pytest.raises(ActionError) as caught:
        scale.run(scale_params(by=1), kctx())
    assert caught.value.retryable
    assert kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 2
    assert scale.run(scale_params(by=1), kctx()).result == {"from": 2, "to": 3}


def test_scale_of_a_missing_deployment(kctx: Callable[..., ActionContext]) -> None:
    p = scale.params.model_validate({"namespace": "shop", "deployment": "gone", "replicas": 1})
    with pytest.raises(ActionError, match=r"^deployment shop/gone not found") as caught:
        scale.run(p, kctx())
    assert not caught.value.retryable


def test_deployment_parameters_are_checked() -> None:
    for values, message in [
        ({}, "give exactly one of replicas"),
        ({"replicas": 2, "by": 1}, "give exactly one of replicas"),
        ({"by": 0}, "by must not be 0"),
        ({"replicas": -1}, "greater than or equal to 0"),
        ({"replicas": 51}, "replicas 51 is above max_replicas 50"),
        ({"replicas": 8, "max_replicas": 5}, "above max_replicas 5"),
        ({"replicas": 1, "namespace": "Shop_1"}, "not a namespace name"),
        ({"replicas": 1, "deployment": "-bad"}, "not a Kubernetes object name"),
        ({"replicas": 1, "cluster": "x"}, "Extra inputs are not permitted"),
    ]:
        with pytest.raises(ValidationError, match=message):
            scale_params(**values)
    assert scale.describe(scale_params(by=-2)) == (
        "scale deployment shop/checkout by -2 (at most 50 replicas)"
    )
    assert scale_params(replicas=80, max_replicas=100).replicas == 80


def test_an_api_server_that_does_not_answer_in_time_is_a_timeout(
    kube: KubeStandIn, kctx: Callable[..., ActionContext]
) -> None:
    kube.stall("PATCH", DEPLOYMENT, 2.0)
    with pytest.raises(ActionTimeout) as caught:
        restart.run(restart_params(), kctx(timeout=0.3))
    assert caught.value.retryable
    assert caught.value.message.startswith("the Kubernetes API did not answer in time")
