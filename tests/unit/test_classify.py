"""Service names and ignored alerts, derived from real kube-prometheus alert label sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from incidents.config import IngestSettings, load_settings
from incidents.exceptions import ConfigError
from incidents.ingest.classify import classify, ignore_reason, names_exporter, workload_name

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kube_prometheus_alerts.json"
LABEL_SETS: dict[str, dict[str, str]] = {
    name: labels for name, labels in json.loads(FIXTURES.read_text()).items() if name != "_about"
}

# What each alert is about: the workload, or None where no label names one.
EXPECTED_SERVICE = {
    "KubePodCrashLooping/deployment": "checkout",
    "KubePodCrashLooping/statefulset": "orders-db",
    "KubeDeploymentReplicasMismatch/payments": "payments",
    "KubeDeploymentReplicasMismatch/catalog": "catalog",
    # The workload labels name the subject even when it is an exporter's own Deployment.
    "KubeDeploymentReplicasMismatch/kube-state-metrics": "kube-prometheus-stack-kube-state-metrics",
    "KubeStatefulSetReplicasMismatch": "orders-db",
    "KubeDaemonSetRolloutStuck": "fluent-bit",
    "KubeJobFailed/cronjob": "invoice-export",
    "KubeJobFailed/job": "schema-migrate",
    "KubePodNotReady": "search",
    "KubeContainerWaiting/cronjob-pod": "nightly-report",
    "KubeContainerWaiting/daemonset-pod": "fluent-bit",
    "TargetDown/app": "checkout",
    # Alerts about a node or an exporter target name no workload.
    "TargetDown/node-exporter": None,
    "KubeletDown": None,
    "NodeFilesystemSpaceFillingUp": None,
    "Watchdog": None,
    "InfoInhibitor": "checkout",
    "CPUThrottlingHigh": "checkout",
}

EXPECTED_IGNORED = {
    "Watchdog": 'alertname="Watchdog"',
    "InfoInhibitor": 'alertname="InfoInhibitor"',
}


@pytest.mark.parametrize("name", sorted(LABEL_SETS))
def test_service_of_kube_prometheus_alerts(name: str) -> None:
    ingest = IngestSettings()
    assert classify(LABEL_SETS[name], ingest)[1] == EXPECTED_SERVICE[name]
    assert ignore_reason(LABEL_SETS[name], ingest) == EXPECTED_IGNORED.get(name)


def test_two_deployments_behind_kube_state_metrics_are_two_services() -> None:
    ingest = IngestSettings()
    services = {
        classify(LABEL_SETS[name], ingest)[1]
        for name in (
            "KubeDeploymentReplicasMismatch/payments",
            "KubeDeploymentReplicasMismatch/catalog",
        )
    }
    assert services == {"payments", "catalog"}


@pytest.mark.parametrize(
    ("pod", "owner"),
    [
        ("checkout-7d4b9c8f6-x2k9p", "checkout"),  # Deployment, 9-character template hash
        ("api-gateway-5c9f7b6d48-mz4kt", "api-gateway"),  # Deployment, 10 characters
        ("orders-db-0", "orders-db"),  # StatefulSet
        ("kafka-12", "kafka"),
        ("fluent-bit-7xk2p", "fluent-bit"),  # DaemonSet, Job
        ("invoice-export-29384720-h6wqz", "invoice-export"),  # a CronJob's Job's pod
        # Real name parts stay: words have vowels or characters the generator never uses.
        ("nginx", "nginx"),
        ("redis-master", "redis-master"),
        ("payments-v2", "payments-v2"),
        ("web-canary", "web-canary"),
        ("my-app-abcde", "my-app-abcde"),  # vowels: not a generated suffix
        ("auth-0a1b3", "auth-0a1b3"),  # 0, 1 and 3 are never generated
        ("search-index-builder", "search-index-builder"),
        ("-x2k9p", "-x2k9p"),  # nothing would be left of the name
    ],
)
def test_pod_loses_only_a_generated_suffix(pod: str, owner: str) -> None:
    assert workload_name("pod", pod) == owner


def test_only_pod_and_job_name_are_stripped() -> None:
    assert workload_name("deployment", "checkout-7d4b9c8f6-x2k9p") == "checkout-7d4b9c8f6-x2k9p"
    assert workload_name("job_name", "backup-29384720") == "backup"
    assert workload_name("job_name", "backup-v2") == "backup-v2"


@pytest.mark.parametrize(
    ("value", "exporter"),
    [
        ("kube-state-metrics", True),
        ("prometheus-kube-state-metrics", True),
        ("kube-prometheus-stack-kube-state-metrics", True),
        ("node-exporter", True),
        ("kube-prometheus-stack-prometheus-node-exporter", True),
        ("kubelet", True),
        ("kube-prometheus-stack-kubelet", True),
        ("cadvisor", True),
        ("blackbox", True),
        ("blackbox-exporter", True),
        ("prometheus-blackbox-exporter", True),
        ("checkout", False),
        ("state-metrics", False),
        ("kubelet-proxy", False),
        ("my-node-exporter-fork", False),
    ],
)
def test_exporter_names_alone_or_helm_prefixed(value: str, exporter: bool) -> None:
    assert names_exporter(value, IngestSettings().exporters) is exporter


def test_exporters_and_ignore_list_are_configurable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "ingest:\n"
        "  exporters: [mysqld]\n"
        '  ignore_alerts: [\'{alertname="LoadTest", env=~"stag.*"}\']\n'
    )
    monkeypatch.setenv("INCIDENTS_CONFIG", str(config))
    ingest = load_settings().ingest
    assert classify({"job": "prometheus-mysqld-exporter"}, ingest)[1] is None
    assert classify({"job": "kube-state-metrics"}, ingest)[1] == "kube-state-metrics"
    assert ignore_reason({"alertname": "LoadTest", "env": "staging"}, ingest) == (
        '{alertname="LoadTest", env=~"stag.*"}'
    )
    assert ignore_reason({"alertname": "LoadTest", "env": "prod"}, ingest) is None
    # The list replaces the defaults; `severity: none` is ignored whatever the list says.
    assert ignore_reason({"alertname": "Watchdog"}, ingest) is None
    assert ignore_reason({"alertname": "Watchdog", "severity": "none"}, ingest) == (
        'severity="none"'
    )
    assert ignore_reason({"alertname": "X", "priority": "None"}, ingest) == 'priority="None"'


def test_a_bad_ignore_matcher_names_the_file_line_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("ingest:\n  ignore_alerts:\n    - 'alertname=~\"(\"'\n")
    monkeypatch.setenv("INCIDENTS_CONFIG", str(config))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert f"{config}:3" in err.value.message
    assert "ingest.ignore_alerts" in err.value.message
