"""Prometheus metrics of the service.

The incident, pipeline-lag and muted-alert figures are read from the database at scrape
time, so they are right whichever process changed them (API replicas, Celery workers) and
every replica reports the same values: aggregate them with max(), not sum().
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import ClassVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

ALERTS_INGESTED = Counter(
    "incidents_alerts_ingested_total",
    "Alerts accepted and committed, by source and alert status.",
    ["source", "status"],
)
DUPLICATE_DELIVERIES = Counter(
    "incidents_duplicate_deliveries_total",
    "Deliveries recognised as a repeat of one already stored (retries, HA pairs).",
    ["source"],
)
INGEST_REJECTED = Counter(
    "incidents_ingest_rejected_total",
    "Requests refused, by source (alertmanager, generic; api for other endpoints) and HTTP "
    "status: invalid ingest bodies (400, 422), refused keys (401, 403), and bodies too slow "
    "(408), too large (413) or compressed where not accepted (415).",
    ["source", "status"],
)
PLAYBOOK_RUNS_REFUSED = Counter(
    "incidents_playbook_runs_refused_total",
    "Playbook runs a trigger matched but the policy refused, by playbook and limit.",
    ["playbook", "limit"],
)
PLAYBOOK_STEPS = Counter(
    "incidents_playbook_steps_total",
    "Playbook steps finished, by action and outcome (succeeded, failed, skipped, ...).",
    ["action", "status"],
)
REQUEST_LATENCY = Histogram(
    "incidents_http_request_duration_seconds",
    "HTTP request latency by method, route template and status.",
    ["method", "path", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PIPELINE_PENDING = Gauge(
    "incidents_pipeline_jobs_pending", "Outbox jobs waiting for a pipeline worker."
)
INGEST_WAITING = Gauge(
    "incidents_ingest_requests_waiting", "Ingest requests waiting for their group commit."
)
BROKER_QUEUE = Gauge(
    "incidents_broker_queue_length", "Messages waiting in the Celery broker queue."
)
OPEN_INCIDENTS = Gauge("incidents_open", "Open incidents, by severity.", ["severity"])
NOTIFICATIONS = Gauge(
    "incidents_notifications",
    "Notifications in the outbox, by channel and status (rows are kept, so sent and failed "
    "only grow).",
    ["channel", "status"],
)
NOTIFY_LAG = Gauge(
    "incidents_notify_lag_seconds",
    "Seconds the oldest due notification of each channel has waited (0 when none waits).",
    ["channel"],
)
ESCALATIONS_OVERDUE = Gauge(
    "incidents_escalation_steps_overdue",
    "Escalation steps past their deadline by more than one sweep interval: above 0 for "
    "long, the escalator is stalled (no beat, no worker, or the database is down).",
)
ESCALATION_OLDEST_OVERDUE = Gauge(
    "incidents_escalation_oldest_overdue_seconds",
    "Seconds the most overdue escalation step is past its deadline (0 when none is).",
)
OLDEST_OPEN_INCIDENT = Gauge(
    "incidents_open_oldest_age_seconds",
    "Seconds since the oldest open incident of each severity opened (0 when none is open).",
    ["severity"],
)
PIPELINE_LAG = Gauge(
    "incidents_pipeline_lag_seconds",
    "Age of the oldest pipeline job not yet done, pending or running (0 when none waits).",
)
ALERTS_MUTED = Gauge(
    "incidents_alerts_muted",
    "Firing alerts that page no one, by reason: silenced, inhibited, ignored "
    "(severity none or ingest.ignore_alerts).",
    ["reason"],
)


class DatabaseTotals(Collector):
    """Incident events counted in the database, exposed as counters.

    The count is kept in the transaction that opens or resolves an incident, in whichever
    process runs it; a counter held in a worker's memory would be seen by no scrape.
    """

    HELP: ClassVar[dict[str, str]] = {
        "opened": "Incidents opened.",
        "reopened": "Resolved incidents reopened by an alert firing again.",
        "resolved": "Incidents resolved (an incident reopened and resolved again counts twice).",
    }

    def __init__(self) -> None:
        self._values: dict[str, int] = {}

    def set(self, values: Mapping[str, int]) -> None:
        """Replace the values with those just read from the database."""
        self._values = dict(values)

    def describe(self) -> Iterator[CounterMetricFamily]:
        """The metric names, for the registry's duplicate check."""
        for event, text in self.HELP.items():
            yield CounterMetricFamily(f"incidents_{event}", text)

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The last values read; nothing before the first read (never a false reset to 0)."""
        for event, text in self.HELP.items():
            if event in self._values:
                yield CounterMetricFamily(f"incidents_{event}", text, value=self._values[event])


INCIDENT_TOTALS = DatabaseTotals()
REGISTRY.register(INCIDENT_TOTALS)


class HeartbeatFigures(Collector):
    """Each heartbeat's figures, read from the database at scrape time.

    A collector rather than labelled gauges: a heartbeat that was removed disappears from
    the next scrape instead of staying at its last value.
    """

    SINCE = "incidents_heartbeat_seconds_since_ping"
    EXPIRED = "incidents_heartbeat_expired"
    HELP: ClassVar[dict[str, str]] = {
        SINCE: "Seconds since the heartbeat's last ping (since its definition if never pinged).",
        EXPIRED: "1 while the heartbeat is missed (its HeartbeatMissing alert fires), else 0.",
    }

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, bool]] = {}

    def set(self, values: Mapping[str, tuple[float, bool]]) -> None:
        """Replace the figures: seconds since the last ping and whether it expired, by name."""
        self._values = dict(values)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The metric names, for the registry's duplicate check."""
        for name, text in self.HELP.items():
            yield GaugeMetricFamily(name, text)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per heartbeat and metric."""
        since = GaugeMetricFamily(self.SINCE, self.HELP[self.SINCE], labels=["heartbeat"])
        expired = GaugeMetricFamily(self.EXPIRED, self.HELP[self.EXPIRED], labels=["heartbeat"])
        for name, (seconds, missed) in sorted(self._values.items()):
            since.add_metric([name], seconds)
            expired.add_metric([name], 1.0 if missed else 0.0)
        yield since
        yield expired


HEARTBEAT_FIGURES = HeartbeatFigures()
REGISTRY.register(HEARTBEAT_FIGURES)
