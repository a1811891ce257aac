"""Prometheus metrics of the service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
