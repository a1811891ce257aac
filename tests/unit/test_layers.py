"""Package layering: `incidents` never imports `workers` (workers depend on incidents)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap

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
