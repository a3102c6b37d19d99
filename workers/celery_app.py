"""The Celery app, configured from Settings, and the beat schedule (run exactly one beat)."""

import os

from celery import Celery
from celery.schedules import crontab

from service.settings import Settings, get_settings
from workers.observability import watch_worker
from workers.process_signals import connect_process_signals


def make_celery_app(settings: Settings) -> Celery:
    app = Celery("paperwire", broker=settings.redis_url, include=["workers.tasks"])
    hard_limit = settings.task_time_limit_seconds
    # Set alike for broker and results (celery#7651); see broker_visibility_timeout_seconds.
    transport_options = {"visibility_timeout": visibility_timeout(settings)}
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency or 2 * (os.cpu_count() or 1),
        # The soft limit raises inside the task so it can stop cleanly; the hard one kills it.
        task_soft_time_limit=hard_limit * 0.9,
        task_time_limit=hard_limit,
        broker_transport_options=transport_options,
        result_backend_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        beat_schedule=beat_schedule(settings),
    )
    return app


def visibility_timeout(settings: Settings) -> int:
    return int(settings.broker_visibility_timeout_seconds)


def beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    fetch_at = settings.fetch_papers_at
    return {
        "fetch-papers": {
            "task": "paperwire.fetch_papers",
            "schedule": crontab(hour=fetch_at.hour, minute=fetch_at.minute),
        },
        # Delivery hours are whole hours in each subscriber's zone; quarter-hour ticks also
        # catch zones whose offset is not a whole number of hours (India, Nepal, …).
        "enqueue-due-digests": {
            "task": "paperwire.enqueue_due_digests",
            "schedule": crontab(minute="*/15"),
        },
        "sweep-deliveries": {
            "task": "paperwire.sweep_deliveries",
            "schedule": settings.sweep_interval_seconds,
        },
        "prune-pending-signups": {
            "task": "paperwire.prune_pending_signups",
            "schedule": crontab(hour=3, minute=30),
        },
        "prune-deliveries": {
            "task": "paperwire.prune_deliveries",
            "schedule": crontab(hour=3, minute=45),
        },
        # Beat's heartbeat (workers.process_signals); a worker that finds one late drops it.
        "beat-heartbeat": {
            "task": "paperwire.beat_heartbeat",
            "schedule": settings.beat_heartbeat_seconds,
            "options": {"expires": settings.beat_heartbeat_seconds},
        },
    }


app = make_celery_app(get_settings())
# Logging as every Paperwire process logs, task ids in the lines, beat's heartbeat.
connect_process_signals()
# The worker's metrics port and the records of beat jobs and paper fetches.
watch_worker(app)
