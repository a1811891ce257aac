"""What an alert's labels say: its severity, its service, and whether it takes part in incidents.

The service is the workload the alert is about. Alerts built on kube-state-metrics or
node-exporter series carry the exporter's own `job`, `service` and (for series without a
pod of their own) `pod` labels, so a value naming a known exporter is skipped, and a pod
name loses the suffix its controller generated: `checkout-7d4b9c8f6-x2k9p` is the
workload `checkout`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from incidents.config import SEVERITIES, IngestSettings
from incidents.routing.matchers import Matcher, matches_all, parse_matchers

# The alphabet of names Kubernetes generates (no vowels, no 0, 1 or 3), so a real word
# such as "nginx" or "redis" is never taken for a suffix.
_GENERATED = "bcdfghjklmnpqrstvwxz2456789"
# Deployment pod: <deployment>-<pod-template-hash>-<random>. The hash encodes a 32-bit
# number's decimal digits, so it has up to 10 characters (almost always 8 to 10).
_DEPLOYMENT_POD = re.compile(rf"(.+)-[{_GENERATED}]{{6,10}}-[{_GENERATED}]{{5}}")
# DaemonSet, Job and bare ReplicaSet pods: <owner>-<random>.
_OWNED_POD = re.compile(rf"(.+)-[{_GENERATED}]{{5}}")
# StatefulSet pod: <statefulset>-<ordinal>.
_STATEFUL_POD = re.compile(r"(.+)-(?:0|[1-9][0-9]{0,5})")
# A Job a CronJob started: <cronjob>-<scheduled time in minutes since the epoch>.
_CRONJOB_RUN = re.compile(r"(.+)-[0-9]{8,10}")

# Kubernetes workload labels come from kube-state-metrics' own series and name the subject
# of the alert, even when that subject is an exporter's own workload.
_WORKLOAD_LABELS = frozenset({"deployment", "statefulset", "daemonset", "job_name"})


def classify(labels: Mapping[str, str], settings: IngestSettings) -> tuple[str, str | None]:
    """Return (severity P0..P3, service name or None) for a label set."""
    severity: str = settings.default_severity
    found = _severity_label(labels, settings)
    if found is not None:
        value = found[1].strip()
        if value.upper() in SEVERITIES:
            severity = value.upper()
        else:
            severity = settings.severity_map.get(value.lower(), settings.default_severity)
    return severity, service_of(labels, settings)


def service_of(labels: Mapping[str, str], settings: IngestSettings) -> str | None:
    """The workload named by the first service label that names one, or None."""
    for key in settings.service_labels:
        raw = labels.get(key)
        if not raw:
            continue
        candidate = workload_name(key, raw)
        if key not in _WORKLOAD_LABELS and names_exporter(candidate, settings.exporters):
            continue
        return candidate
    return None


def workload_name(label: str, value: str) -> str:
    """The value with a controller's generated suffix removed (`pod` and `job_name` only)."""
    if label == "job_name":
        return _strip(_CRONJOB_RUN, value)
    if label != "pod":
        return value
    owner = _strip(_DEPLOYMENT_POD, value)
    if owner != value:
        return owner
    owner = _strip(_OWNED_POD, value)
    if owner != value:
        return _strip(_CRONJOB_RUN, owner)
    return _strip(_STATEFUL_POD, value)


def _strip(shape: re.Pattern[str], value: str) -> str:
    found = shape.fullmatch(value)
    return found.group(1) if found else value


def names_exporter(value: str, exporters: list[str]) -> bool:
    """True when the value is a known exporter's name, alone or Helm-prefixed."""
    name = value.lower()
    forms = [name]
    if name.endswith("-exporter"):
        forms.append(name.removesuffix("-exporter"))
    return any(form == e or form.endswith("-" + e) for form in forms for e in exporters)


def ignore_reason(labels: Mapping[str, str], settings: IngestSettings) -> str | None:
    """Why the alert opens no incident (`severity="none"` or the matching entry of
    `ingest.ignore_alerts`), or None for an alert that takes part in incidents."""
    for text, matchers in _ignore_rules(tuple(settings.ignore_alerts)):
        if matches_all(matchers, labels):
            return text
    found = _severity_label(labels, settings)
    if found is not None and found[1].strip().lower() == "none":
        return f'{found[0]}="{found[1]}"'
    return None


def _severity_label(labels: Mapping[str, str], settings: IngestSettings) -> tuple[str, str] | None:
    for key in settings.severity_labels:
        raw = labels.get(key)
        if raw is not None:
            return key, raw
    return None


@lru_cache(maxsize=8)
def _ignore_rules(entries: tuple[str, ...]) -> list[tuple[str, list[Matcher]]]:
    # Parsed once per configuration, not once per alert.
    return [(text, parse_matchers(text)) for text in entries]
