"""Package layering: `incidents` never imports `workers` (workers depend on incidents); the
structural rules: no module over 400 lines, networkx only in the graph module, no network
client in a pipeline stage."""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT

# Every module under incidents/, then the Celery hand-off built as the API builds it.
SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import incidents
    for module in pkgutil.walk_packages(incidents.__path__, "incidents."):
        importlib.import_module(module.name)
    from incidents.config import Settings
    from incidents.pipeline.dispatch import make_dispatcher
    settings = Settings(
        database_url="sqlite://", broker_url="redis://127.0.0.1:1/0", config="", api_token="t"
    )
    make_dispatcher(None, settings)
    loaded = sorted(m for m in sys.modules if m == "workers" or m.startswith("workers."))
    assert not loaded, f"incidents imported {loaded}"
    print("ok")
    """
)


def test_no_incidents_module_imports_workers() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_workers_register_the_tasks_the_api_sends() -> None:
    import workers.notify
    import workers.pipeline
    import workers.playbooks  # noqa: F401
    from incidents.tasks import (
        DIGEST_TASK,
        ESCALATE_TASK,
        NOTIFY_QUEUE,
        NOTIFY_SWEEP_TASK,
        NOTIFY_TASK,
        PIPELINE_TASK,
        PLAYBOOK_QUEUE,
        PLAYBOOK_SWEEP_TASK,
        PLAYBOOK_TASK,
        QUEUE,
        SWEEP_TASK,
        UPKEEP_TASK,
    )
    from workers.app import celery_app

    notify = {NOTIFY_TASK, NOTIFY_SWEEP_TASK, DIGEST_TASK}
    assert {PIPELINE_TASK, SWEEP_TASK, UPKEEP_TASK} | notify <= set(celery_app.tasks)
    assert celery_app.conf.task_default_queue == QUEUE
    # Notify tasks go to their own queue, wherever they are sent from.
    for name in notify:
        assert celery_app.amqp.router.route({}, name)["queue"].name == NOTIFY_QUEUE
    # Playbook runs too: a run waiting on a slow remote never holds up a page.
    assert {PLAYBOOK_TASK, PLAYBOOK_SWEEP_TASK} <= set(celery_app.tasks)
    for name in (PLAYBOOK_TASK, PLAYBOOK_SWEEP_TASK):
        assert celery_app.amqp.router.route({}, name)["queue"].name == PLAYBOOK_QUEUE
    scheduled = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    assert scheduled == {
        SWEEP_TASK,
        UPKEEP_TASK,
        NOTIFY_SWEEP_TASK,
        DIGEST_TASK,
        ESCALATE_TASK,
        PLAYBOOK_SWEEP_TASK,
    }


# The routers whose reads live in incidents/api/queries/.
ROUTERS = ("alerts", "services", "silences", "am_silences", "ops", "heartbeats")
SESSION_READS = {"execute", "scalars", "scalar", "get", "query"}


def test_routers_leave_their_reads_to_the_query_modules() -> None:
    for name in ROUTERS:
        tree = ast.parse((ROOT / "incidents" / "api" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("sqlalchemy", "sqlmodel"):
                imported = {alias.name for alias in node.names}
                assert not imported & {"select", "text", "col"}, f"{name}.py builds a query"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "session"
                and node.func.attr in SESSION_READS
            ):
                raise AssertionError(f"{name}.py:{node.lineno} reads the database itself")


# -- structural rules ------------------------------------------------------------------------

MAX_MODULE_LINES = 400
# Network clients no pipeline stage may import: stages run inside the job's transaction,
# some under a correlation lock, so the sending is left to the workers that drain outboxes.
NETWORK_CLIENTS = (
    "httpx",
    "requests",
    "slack_sdk",
    "twilio",
    "aiosmtplib",
    "smtplib",
    "kubernetes",
    "urllib.request",
    "socket",
)
STAGE_MODULES = (
    *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "incidents" / "pipeline").glob("*.py")),
    "incidents/notify/stage.py",
    "incidents/playbooks/stage.py",
    "incidents/escalation/engine.py",
)


def _python_files(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module the file imports, at any depth of its code (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _imports_any(imported: set[str], modules: tuple[str, ...]) -> list[str]:
    return sorted(
        name
        for name in imported
        for module in modules
        if name == module or name.startswith(f"{module}.")
    )


def test_no_module_is_over_the_size_limit() -> None:
    files = _python_files("incidents", "workers")
    assert len(files) > 100  # the walk found the code
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in files
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}, f"over {MAX_MODULE_LINES} lines: {too_long}"


def test_only_the_graph_module_imports_networkx() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for path in _python_files("incidents", "workers")
        if _imports_any(_imports(path), ("networkx",))
    }
    assert importers == {"incidents/correlation/graph.py"}


def test_the_pipeline_stages_are_the_modules_checked_for_network_clients() -> None:
    from incidents.pipeline.runner import build_stages
    from tests.conftest import make_settings

    stages = build_stages(make_settings("sqlite://"))
    assert len(stages) >= 3
    for stage in stages:
        source = Path(inspect.getfile(type(stage))).resolve().relative_to(ROOT.resolve())
        assert str(source) in STAGE_MODULES, f"{source} runs as a stage; add it to the list"


def test_no_pipeline_stage_imports_a_network_client() -> None:
    offenders = {
        module: found
        for module in STAGE_MODULES
        if (found := _imports_any(_imports(ROOT / module), NETWORK_CLIENTS))
    }
    assert offenders == {}


def test_the_import_checks_see_lazy_and_dotted_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from urllib import request\n"
        "def send():\n"
        "    import slack_sdk.web\n"
        "    from twilio.rest import Client\n"
    )
    found = _imports_any(_imports(probe), NETWORK_CLIENTS)
    assert found == ["slack_sdk.web", "twilio.rest", "twilio.rest.Client", "urllib.request"]
