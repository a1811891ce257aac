"""`kubernetes.delete_pod` against the stand-in API server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from incidents.playbooks.actions import get
from incidents.playbooks.actions.base import ActionContext, ActionError

from .kube_standin import KubeStandIn, write_kubeconfig

PODS = "/api/v1/namespaces/shop/pods"
delete_pod = get("kubernetes.delete_pod")
assert delete_pod is not None


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    """Pods of app=checkout in every state that matters, and one of another app."""
    with KubeStandIn() as standin:
        app = {"app": "checkout"}
        standin.add_pod("shop", "checkout-ok", app)
        standin.add_pod("shop", "checkout-unready", app, ready=False)
        standin.add_pod("shop", "checkout-crash", app, waiting="CrashLoopBackOff", restarts=7)
        standin.add_pod("shop", "checkout-failed", app, ready=False, phase="Failed")
        standin.add_pod("shop", "checkout-leaving", app, ready=False, terminating=True)
        standin.add_pod("shop", "checkout-done", app, ready=False, phase="Succeeded")
        standin.add_pod("shop", "cart-unready", {"app": "cart"}, ready=False)
        standin.add_pod("other", "checkout-elsewhere", app, ready=False)
        yield standin


@pytest.fixture
def kctx(
    kube: KubeStandIn, tmp_path: Path, make_ctx: Callable[..., ActionContext]
) -> ActionContext:
    """A context whose settings point at the stand-in."""
    path = write_kubeconfig(tmp_path, kube.url, kube.token)
    return make_ctx(playbooks={"kubernetes": {"kubeconfig": str(path)}})


def params(**values: Any) -> Any:
    """Validated delete_pod parameters in namespace shop."""
    return delete_pod.params.model_validate({"namespace": "shop", **values})


def test_a_selector_deletes_only_the_unhealthy_pods(kube: KubeStandIn, kctx: ActionContext) -> None:
    out = delete_pod.run(params(label_selector="app=checkout", grace_period_seconds=5), kctx)
    assert out.result == {
        "deleted": ["checkout-crash", "checkout-failed", "checkout-unready"],
        "already_gone": [],
        "skipped_healthy": 2,
    }
    listing, *deletes = kube.requests
    assert (listing.method, listing.path) == ("GET", PODS)
    assert listing.query["labelSelector"] == ["app=checkout"]
    assert [(r.method, r.path) for r in deletes] == [
        ("DELETE", f"{PODS}/checkout-crash"),
        ("DELETE", f"{PODS}/checkout-failed"),
        ("DELETE", f"{PODS}/checkout-unready"),
    ]
    assert all(r.query["gracePeriodSeconds"] == ["5"] for r in deletes)
    assert ("shop", "checkout-ok") in kube.pods and ("shop", "cart-unready") in kube.pods
    assert ("other", "checkout-elsewhere") in kube.pods
    assert "deleted pod shop/checkout-crash" in out.output


def test_a_selector_with_unhealthy_only_false_deletes_every_match(
    kube: KubeStandIn, kctx: ActionContext
) -> None:
    out = delete_pod.run(params(label_selector="app=cart", unhealthy_only=False), kctx)
    assert out.result["deleted"] == ["cart-unready"]
    out = delete_pod.run(params(label_selector="app=checkout", unhealthy_only=False), kctx)
    # The pod already terminating is left to finish.
    assert out.result["deleted"] == [
        "checkout-crash",
        "checkout-done",
        "checkout-failed",
        "checkout-ok",
        "checkout-unready",
    ]


def test_more_matches_than_max_pods_deletes_nothing(kube: KubeStandIn, kctx: ActionContext) -> None:
    with pytest.raises(ActionError) as caught:
        delete_pod.run(params(label_selector="app=checkout", max_pods=2), kctx)
    assert not caught.value.retryable
    assert "3 pods match 'app=checkout' in shop, more than max_pods 2" in caught.value.message
    assert [r.method for r in kube.requests] == ["GET"]


def test_a_pod_by_name_and_one_already_gone(kube: KubeStandIn, kctx: ActionContext) -> None:
    out = delete_pod.run(params(name="checkout-ok"), kctx)
    assert out.result == {"deleted": ["checkout-ok"], "already_gone": [], "skipped_healthy": 0}
    assert [r.method for r in kube.requests] == ["DELETE"]
    out = delete_pod.run(params(name="checkout-ok"), kctx)
    assert out.result == {
        "deleted": ["checkout-ok"],
        "already_gone": ["checkout-ok"],
        "skipped_healthy": 0,
    }
    assert "already gone" in out.output


def test_a_named_pod_with_unhealthy_only_is_read_first(
    kube: KubeStandIn, kctx: ActionContext
) -> None:
    unready = delete_pod.run(params(name="cart-unready", unhealthy_only=True), kctx)
    assert unready.result["deleted"] == ["cart-unready"]
    skipped = delete_pod.run(params(name="checkout-ok", unhealthy_only=True), kctx)
    assert skipped.result == {"deleted": [], "already_gone": [], "skipped_healthy": 1}
    assert [r.method for r in kube.requests] == ["GET", "DELETE", "GET"]


def test_a_failed_delete_is_retryable_and_says_what_was_done(
    kube: KubeStandIn, kctx: ActionContext
) -> None:
    kube.fail("DELETE", f"{PODS}/checkout-failed", 503)
    with pytest.raises(ActionError) as caught:
        delete_pod.run(params(label_selector="app=checkout"), kctx)
    assert caught.value.retryable
    assert caught.value.result["deleted"] == ["checkout-crash"]
    assert delete_pod.idempotent(params(label_selector="app=checkout"))
    # The retry lists again and finishes the job.
    out = delete_pod.run(params(label_selector="app=checkout"), kctx)
    assert out.result["deleted"] == ["checkout-failed", "checkout-unready"]


def test_delete_pod_parameters_and_description() -> None:
    for values, message in [
        ({}, "give exactly one of name or label_selector"),
        ({"name": "a", "label_selector": "app=a"}, "give exactly one"),
        ({"label_selector": "  "}, "would match every pod"),
        ({"name": "a", "max_pods": 0}, "max_pods"),
        ({"name": "a", "grace_period_seconds": -1}, "grace_period_seconds"),
        ({"name": "a", "force": True}, "Extra inputs are not permitted"),
    ]:
        with pytest.raises(ValidationError, match=message):
            params(**values)
    assert delete_pod.describe(params(label_selector="app=a")) == (
        "delete the unhealthy pods matching app=a in shop (at most 10)"
    )
    assert delete_pod.describe(params(name="a-1", grace_period_seconds=0)) == (
        "delete pod shop/a-1, grace period 0 s"
    )
