"""Heartbeats (dead man's switches): something must ping us, or an incident opens.

A heartbeat is pinged through the API or by an alert that is meant to keep firing (the
kube-prometheus `Watchdog`, routed to us by Alertmanager). When no ping arrives for its
interval plus grace, the upkeep injects a synthetic `HeartbeatMissing` alert through the
same store-and-job path as the webhook, so the incident it opens is correlated, routed
and paged like any other; the next ping stores that alert's resolve the same way.

- `spec`: the definitions as the config file and the API give them, validated.
- `store`: the stored definitions document and the per-heartbeat state rows.
- `monitor`: pings, and the upkeep's expiry check.
- `inject`: the synthetic alert and its resolve.
- `watch`: the ingest hook that turns matching alerts into pings.
"""
