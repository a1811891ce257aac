"""The shipped service-down playbook, end to end: the real Alertmanager delivers a
service-down alert, the incident opens, and the playbook restarts the deployment through
the real Kubernetes client (at a local stand-in of the Kubernetes API), checks health at a
local server, and scales up because the check still fails, in that order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import running_service
from tests.e2e.processes import Alertmanager, Service, am_alert, wait_for
from tests.playbooks.kube_standin import TOKEN as KUBE_TOKEN
from tests.playbooks.kube_standin import KubeStandIn, write_kubeconfig
from tests.playbooks.servers import RecordingServer, Reply

pytestmark = pytest.mark.alertmanager


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn() as standin:
        standin.add_deployment("prod", "user-service", replicas=2)
        yield standin


@pytest.fixture(scope="module")
def health() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        # The service stays unhealthy after the restart: the playbook must scale it up.
        server.respond("GET", "/healthz", Reply(status=503, text="down"))
        yield server


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, kube: KubeStandIn) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("incidents")
    kubeconfig = write_kubeconfig(tmp, kube.url, KUBE_TOKEN)
    with running_service(
        tmp,
        INCIDENTS_CORRELATION__GRAPH_FILE=str(ROOT / "examples" / "services.yaml"),
        INCIDENTS_CORRELATION__OPEN_HOLD_SECONDS="0",
        INCIDENTS_PLAYBOOKS__FOLDER=str(ROOT / "examples" / "playbooks"),
        INCIDENTS_PLAYBOOKS__KUBERNETES__KUBECONFIG=str(kubeconfig),
    ) as svc:
        yield svc


def _run(svc: Service, incident_id: int) -> dict[str, Any] | None:
    runs = svc.client.get(f"/api/v1/incidents/{incident_id}/playbook-runs").json()
    finished = [r for r in runs if r["status"] not in ("pending", "running")]
    return finished[0] if finished else None


def test_a_service_down_alert_runs_the_shipped_playbook_in_order(
    alertmanager: Alertmanager, kube: KubeStandIn, health: RecordingServer
) -> None:
    svc = alertmanager.service
    labels = {
        "alertname": "ServiceDown",
        "severity": "critical",
        "service": "user-service",
        "namespace": "prod",
        "deployment": "user-service",
    }
    alert = am_alert(labels)
    alert["annotations"].update(
        health_url=f"{health.url}/healthz",
        settle_seconds="0",
        check_attempts="2",
        check_interval_seconds="0.2",
    )
    posted = time.monotonic()
    alertmanager.post([alert])

    def incident() -> dict[str, Any] | None:
        items = svc.client.get("/api/v1/incidents").json()["items"]
        return items[0] if items else None

    opened = wait_for("the incident", incident, 30, alertmanager.diagnostics)
    run = wait_for(
        "the playbook run", lambda: _run(svc, opened["id"]), 60, alertmanager.diagnostics
    )
    assert run["playbook_id"] == "service-down" and run["trigger"] == "incident_opened"
    assert run["status"] == "succeeded", run
    steps = {s["name"]: s for s in run["steps"]}
    assert [s["status"] for s in run["steps"]] == ["succeeded", "failed", "succeeded", "succeeded"]
    assert steps["check"]["result"]["ok"] is False and steps["check"]["result"]["attempts"] == 2

    # The requests the real Kubernetes client sent, in order.
    calls = [(r.method, r.path) for r in kube.requests]
    deployment = "/apis/apps/v1/namespaces/prod/deployments/user-service"
    assert calls[0] == ("PATCH", deployment)
    assert calls[1:] == [("GET", f"{deployment}/scale"), ("PATCH", f"{deployment}/scale")]
    restart = kube.requests[0]
    assert restart.content_type.startswith("application/strategic-merge-patch+json")
    annotations = restart.body["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert kube.requests[2].body["spec"]["replicas"] == 4
    assert all(r.authorization == f"Bearer {KUBE_TOKEN}" for r in kube.requests)

    # The health checks came between the restart and the scale-up.
    probes = health.requests_to("GET", "/healthz")
    assert len(probes) == 2 and all(p.at > posted for p in probes)
    at = {name: datetime.fromisoformat(steps[name]["finished_at"]) for name in steps}
    started = {name: datetime.fromisoformat(steps[name]["started_at"]) for name in steps}
    assert at["restart"] <= started["check"] and at["check"] <= started["scale_up"]

    timeline = svc.client.get(f"/api/v1/incidents/{opened['id']}").json()["timeline"]
    said = [e["message"] for e in timeline if e["kind"] == "playbook_step"]
    assert len(said) == 4 and "scale_up" in said[2]
