"""Two Alertmanagers of an HA pair deliver the same cascade in opposite orders: one
incident per real failure, and one opening page each, whatever the interleaving.

Both Alertmanagers are real binaries with gossip switched off, so each delivers every
alert itself, as a pair does when its peers cannot reach each other or before they
settle. One receives the alerts from the top of the cascade down, the other from the
bottom up, at the same moments.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from incidents.db import utcnow
from incidents.ingest.fingerprint import label_fingerprint
from tests.conftest import ROOT
from tests.e2e.processes import (
    DELIVERY_TIMEOUT,
    HOOK_PATH,
    START_TIMEOUT,
    TOKEN,
    Proc,
    Service,
    free_port,
    rfc3339,
    spawn,
    unique,
    wait_for,
)

pytestmark = pytest.mark.alertmanager

PAIR_CONFIG = """\
route:
  receiver: incidents
  group_by: ['...']
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: incidents
    webhook_configs:
      - url: {hook}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""

# From the top of the cascade down: notification-service -> user-service -> database,
# feedback-service -> database. Three failures elsewhere have no alerting neighbour.
CASCADE = ["notification-service", "user-service", "database-postgres", "feedback-service"]
ELSEWHERE = ["ai-models-bedrock", "cache-redis", "storage-s3"]


@pytest.fixture(scope="module")
def pair(
    am_binary: str, service: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[httpx.Client]]:
    graph = (ROOT / "examples" / "services.yaml").read_bytes()
    loaded = service.client.put(
        "/api/v1/services/graph", content=graph, headers={"Content-Type": "application/yaml"}
    )
    assert loaded.status_code == 200, loaded.text
    procs: list[Proc] = []
    clients: list[httpx.Client] = []
    try:
        for n in range(2):
            tmp = tmp_path_factory.mktemp(f"am{n}")
            config = tmp / "am.yml"
            config.write_text(
                PAIR_CONFIG.format(hook=f"{service.base_url}{HOOK_PATH}", token=TOKEN)
            )
            (tmp / "data").mkdir()
            port = free_port()
            proc = spawn(
                f"alertmanager {n}",
                [
                    am_binary,
                    f"--config.file={config}",
                    f"--storage.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",
                ],
                Path(tmp / "alertmanager.log"),
            )
            procs.append(proc)
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False)
            clients.append(client)
            wait_for(
                f"Alertmanager {n} ready",
                lambda c=client: True if c.get("/-/ready").status_code == 200 else None,  # type: ignore[misc]
                START_TIMEOUT,
                proc.logs,
                (proc,),
            )
        yield clients
    finally:
        for client in clients:
            client.close()
        for proc in procs:
            proc.stop()


def test_opposite_orders_give_one_incident_and_one_page_per_failure(
    pair: list[httpx.Client], service: Service
) -> None:
    run = unique("ha")
    started = utcnow() - timedelta(minutes=2)
    order = CASCADE + ELSEWHERE
    alerts = {
        name: {
            "labels": {"alertname": f"{run}-{name}", "service": name, "severity": "warning"},
            "annotations": {"summary": f"{name} is failing"},
            "startsAt": rfc3339(started + timedelta(seconds=n)),
        }
        for n, name in enumerate(order)
    }

    def deliver(client: httpx.Client, names: list[str]) -> None:
        for name in names:
            response = client.post("/api/v2/alerts", json=[alerts[name]])
            assert response.status_code == 200, response.text
            time.sleep(0.25)

    threads = [
        threading.Thread(target=deliver, args=(pair[0], order)),
        threading.Thread(target=deliver, args=(pair[1], CASCADE[::-1] + ELSEWHERE[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    prints = {label_fingerprint(a["labels"]): name for name, a in alerts.items()}

    def deliveries() -> float:
        """Alerts received from Alertmanager, stored or recognised as a repeat."""
        text = service.client.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            if (
                line.startswith(
                    ("incidents_alerts_ingested_total{", "incidents_duplicate_deliveries_total{")
                )
                and 'source="alertmanager"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def settled() -> list[dict[str, Any]] | None:
        stored = service.client.get(
            "/api/v1/alerts", params={"filter": f'alertname=~"{run}-.*"', "limit": 100}
        ).json()["items"]
        if len(stored) < len(order) or deliveries() < 2 * len(order):
            return None  # not every alert arrived from both Alertmanagers yet
        items = service.client.get("/api/v1/incidents", params={"limit": 500}).json()["items"]
        placed = {fp for i in items if i["status"] == "open" for fp in i["alert_fingerprints"]}
        if not set(prints) <= placed:
            return None
        pending = service.client.get("/readyz").status_code
        return items if pending == 200 else None

    def state() -> str:
        stored = service.client.get(
            "/api/v1/alerts", params={"filter": f'alertname=~"{run}-.*"', "limit": 100}
        ).json()
        items = service.client.get("/api/v1/incidents", params={"limit": 500}).json()
        return f"{stored}\n{items}\n{service.proc.logs()}"

    incidents = wait_for("both deliveries correlated", settled, DELIVERY_TIMEOUT, state)
    time.sleep(1)  # let the last pipeline job of the slower stream finish
    incidents = service.client.get("/api/v1/incidents", params={"limit": 500}).json()["items"]
    live = [i for i in incidents if i["status"] == "open"]
    groups = sorted(sorted(prints[fp] for fp in i["alert_fingerprints"]) for i in live)
    assert groups == sorted([sorted(CASCADE), *([name] for name in ELSEWHERE)]), groups
    cascade = next(i for i in live if len(i["alert_fingerprints"]) == len(CASCADE))
    assert cascade["roots"] == ["database-postgres"]

    pages = []
    for incident in incidents:
        detail = service.client.get(f"/api/v1/incidents/{incident['id']}").json()
        pages += [(incident["id"], t["kind"]) for t in detail["timeline"] if t["pages"]]
    # One opening page per real incident; merges and re-rooting paged no one.
    assert sorted(pages) == sorted((i["id"], "opened") for i in live), pages
