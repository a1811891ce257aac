"""compose.yaml starts: the compose tool accepts it, no two services take one host port,
every long-running service has a health check and a restart policy, what it mounts
exists, and the Prometheus, Alertmanager and incidents configs it mounts are valid and
agree (the example alert opens an incident whose email goes to the mail catcher)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from incidents.cli import main
from incidents.config import load_settings
from tests.conftest import ROOT, require

COMPOSE = ROOT / "compose.yaml"
EXAMPLES = ROOT / "examples" / "compose"
ONE_SHOT = {"migrate"}
INCIDENTS_COMMANDS = {"serve", "worker", "notify-worker", "playbook-worker", "beat"}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def host_path(container_path: str, service: dict[str, Any]) -> Path | None:
    """The repository file behind a path inside the container, through its bind mounts."""
    target = PurePosixPath(container_path)
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        mount = PurePosixPath(rest.split(":")[0])
        if source.startswith("./") and (target == mount or mount in target.parents):
            return ROOT / source / target.relative_to(mount)
    return None


def test_the_compose_tool_accepts_the_file() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        require("docker-compose", "install it (Debian: docker-compose) to validate compose.yaml")
    assert tool is not None
    done = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr


def test_no_two_services_publish_one_host_port() -> None:
    taken: dict[str, str] = {}
    for name, service in services().items():
        replicas = service.get("deploy", {}).get("replicas", 1)
        for port in service.get("ports", []):
            host = str(port).rsplit(":", 1)[0] if ":" in str(port) else ""
            assert host, f"{name}: {port!r} publishes a random host port; give it one"
            assert replicas == 1, f"{name}: {replicas} replicas cannot share host port {host}"
            assert host not in taken, f"{name} and {taken[host]} both publish {host}"
            taken[host] = name
    assert taken["8080"] == "proxy"  # one entry in front of the API replicas
    assert services()["api"]["deploy"]["replicas"] == 2
    assert "ports" not in services()["api"]


def test_long_running_services_have_health_checks_and_restart_policies() -> None:
    for name, service in services().items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} runs once"
            continue
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no health check"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_the_stack_is_whole() -> None:
    every = services()
    commands = {
        name: s["command"][1]
        for name, s in every.items()
        if s.get("command", [""])[0] == "incidents"
    }
    assert commands["migrate"] == "db" and every["migrate"]["command"][2] == "upgrade"
    assert set(commands.values()) >= INCIDENTS_COMMANDS
    for name, command in commands.items():
        if command in INCIDENTS_COMMANDS:
            condition = every[name]["depends_on"]["migrate"]["condition"]
            assert condition == "service_completed_successfully", name
    assert "--no-migrate" in every["api"]["command"]
    images = {name: s.get("image", "") for name, s in every.items()}
    for name, image in (("postgres", "postgres:"), ("redis", "redis:"), ("mail", "mailpit")):
        assert image in images[name]
    assert images["prometheus"].startswith("prom/prometheus")
    assert images["alertmanager"].startswith("prom/alertmanager")


def test_what_it_mounts_exists() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
                assert volume.endswith(":ro"), f"{name}: mount {source} read-only"
        command = service.get("healthcheck", {}).get("test", [])
        for part in command:
            if str(part).startswith("/app/examples/"):
                found = host_path(part, service)
                assert found is not None and found.is_file(), f"{name}: {part}"
    env = compose()["x-incidents-env"]
    api = services()["api"]
    config = host_path(env["INCIDENTS_CONFIG"], api)
    playbooks = host_path(env["INCIDENTS_PLAYBOOKS__FOLDER"], api)
    assert config is not None and config.is_file()
    assert playbooks is not None and playbooks.is_dir()


def test_the_incidents_config_routes_the_example_alert_to_email(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = compose()["x-incidents-env"]
    assert (env["INCIDENTS_SMTP_HOST"], env["INCIDENTS_SMTP_PORT"]) == ("mail", "1025")
    assert env["INCIDENTS_SMTP_TLS"] == "none"
    config = EXAMPLES / "config.yaml"
    settings = load_settings(str(config))
    assert settings.correlation.graph_file
    # The rule's labels, as ingest reads them: severity critical is P0 on the graph's service.
    rule = rules()["ExampleDatabaseDown"]
    severity = settings.ingest.severity_map[rule["labels"]["severity"]]
    graph = yaml.safe_load((ROOT / "examples" / "services.yaml").read_text(encoding="utf-8"))
    names = {s["name"] for s in graph["services"]}
    for name, each in rules().items():
        if name != "Watchdog":
            assert each["labels"]["service"] in names, name
    capsys.readouterr()
    code = main(["routing", "test", f"severity={severity}", "--config", str(config)])
    assert code == 0
    receiver = capsys.readouterr().out.split()
    assert receiver == ["oncall-email"]
    emails = [r for r in settings.routing.receivers if r.name == "oncall-email"]
    assert emails and emails[0].email


def rules() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((EXAMPLES / "rules.yml").read_text(encoding="utf-8"))
    return {r["alert"]: r for group in document["groups"] for r in group["rules"]}


def test_prometheus_config_and_rules() -> None:
    config = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text(encoding="utf-8"))
    for rule_file in config["rule_files"]:
        assert (EXAMPLES / rule_file).is_file()
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    found = rules()
    assert found["Watchdog"]["expr"] == "vector(1)"
    assert all(str(r["expr"]).strip() for r in found.values())
    jobs = {c["job_name"] for c in config["scrape_configs"]}
    assert 'job="example-db"' in found["ExampleDatabaseDown"]["expr"] and "example-db" in jobs
    promtool = shutil.which("promtool")
    if promtool is None:
        require("promtool", "install it (Debian: prometheus) to check the example rules")
    assert promtool is not None
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "rules.yml"]):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=EXAMPLES)
        assert done.returncode == 0, done.stdout + done.stderr


def test_alertmanager_posts_to_our_webhook_with_the_key() -> None:
    config = yaml.safe_load((EXAMPLES / "alertmanager.yml").read_text(encoding="utf-8"))
    [hook] = config["receivers"][0]["webhook_configs"]
    assert hook["url"] == "http://proxy:8080/api/v1/alerts/alertmanager"
    assert 0 < hook["max_alerts"] <= 50000
    auth = hook["http_config"]["authorization"]
    service = services()["alertmanager"]
    # The entrypoint writes the key to the file the config names.
    assert auth["credentials_file"] in " ".join(service["command"])
    assert "INCIDENTS_API_TOKEN" in service["environment"]
    mounted = host_path("/etc/alertmanager/alertmanager.yml", service)
    assert mounted == EXAMPLES / "alertmanager.yml"
    amtool = shutil.which("amtool")
    if amtool is None:
        require("amtool", "install prometheus-alertmanager to check the Alertmanager config")
    assert amtool is not None
    done = subprocess.run(
        [amtool, "check-config", str(EXAMPLES / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
