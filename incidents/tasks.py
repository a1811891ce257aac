"""What the API and the Celery workers agree on: task names, the queue, the worker program.

The API sends tasks by name and never imports `workers`; `workers` registers its tasks
under these names. The names are part of the wire format, like migration revision ids:
messages waiting in Redis and a beat still running the previous release carry them, so
they stay as first released even though they look like module paths (they name none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

# Run one pipeline job: args [job_id].
PIPELINE_TASK = "workers.pipeline.run_pipeline_job"
# Hand out again the jobs whose hand-off was lost or whose lease lapsed (beat).
SWEEP_TASK = "workers.pipeline.sweep_outbox"
# Un-mute alerts whose silence ended, close quiet flapping incidents (beat).
UPKEEP_TASK = "workers.pipeline.upkeep"

# Run the escalation steps that are due (beat).
ESCALATE_TASK = "workers.pipeline.escalate"
# Send the due notifications of one channel (notify queue): kwargs {channel}.
NOTIFY_TASK = "workers.notify.deliver"
# Hand out channels with due notifications again: lost hand-offs, lapsed leases (beat).
NOTIFY_SWEEP_TASK = "workers.notify.sweep"
# Send the daily digests that are due (beat).
DIGEST_TASK = "workers.notify.digest"

# Run one playbook run, step by step (playbooks queue): kwargs {run_id}.
PLAYBOOK_TASK = "workers.playbooks.run"
# Hand out runs again whose worker died or whose hand-off was lost; expire approvals (beat).
PLAYBOOK_SWEEP_TASK = "workers.playbooks.sweep"

# The pipeline's queue: the workers consume it and the API publishes to it (a Redis list
# of that name).
QUEUE = "incidents"
# Notifications have a queue of their own, consumed by `incidents notify-worker`: a slow
# provider never holds up the pipeline, nor the pipeline a page.
NOTIFY_QUEUE = "notify"
# Playbook runs wait on remote systems for minutes: a queue and worker of their own.
PLAYBOOK_QUEUE = "playbooks"
QUEUE_OF = {
    NOTIFY_TASK: NOTIFY_QUEUE,
    NOTIFY_SWEEP_TASK: NOTIFY_QUEUE,
    DIGEST_TASK: NOTIFY_QUEUE,
    PLAYBOOK_TASK: PLAYBOOK_QUEUE,
    PLAYBOOK_SWEEP_TASK: PLAYBOOK_QUEUE,
}

# The module `incidents worker` and `incidents beat` run (`python -m`), in a child process.
WORKER_MODULE = "workers.main"


def task_sender(broker_url: str, *, timeout: float) -> Celery:
    """A Celery app that only sends tasks by name, and gives up on the broker fast."""
    # Imported here: Celery is slow to import, and only a broker-backed API needs it.
    from celery import Celery

    app = Celery("incidents", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        broker_connection_timeout=timeout,
        broker_transport_options={
            # Connect once per attempt: kombu's default retries sleep seconds.
            "max_retries": 0,
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
        },
    )
    return app
