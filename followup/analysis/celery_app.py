"""Celery the Flask way (Flask's "Background Tasks with Celery"): one Celery app per Flask app, configured from
``app.config`` in `init_app`, kept in ``app.extensions["celery"]``; every task runs inside the app's context.

Tasks are plain functions that receive ids, handed over by the app factory and registered under fixed names,
each routed to its queue:
``scarwatch.analyze_photo`` → ``photos``, ``scarwatch.deliver_outbox`` → ``messages``. A web process sends them
by name (`send_task`) after its transaction is committed; a worker process builds its own app with the same
factory (``make_celery.py``): ``celery -A make_celery worker -Q photos``.

Delivery settings: a task is acknowledged only when it has run (``task_acks_late``) and put back when its
worker process dies (``task_reject_on_worker_lost``); each worker process reserves one task at a time
(prefetch 1); Redis hands an unacknowledged task out again after ``CELERY_VISIBILITY_TIMEOUT`` seconds, longer
than any analysis; a worker process past ``CELERY_WORKER_MAX_MEMORY_KB`` is replaced after its task. None of
this is what keeps a photo: the database row is the job and the scheduler sends it again (`followup.analysis.jobs`).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from celery import Celery, Task
from flask import Flask

ANALYZE_PHOTO = "scarwatch.analyze_photo"
DELIVER_OUTBOX = "scarwatch.deliver_outbox"
QUEUES = {ANALYZE_PHOTO: "photos", DELIVER_OUTBOX: "messages"}


def celery_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Celery's settings from the app's (``CELERY_*``, see the README); ``config["CELERY"]`` overrides any."""
    settings = {
        "broker_url": config["CELERY_BROKER_URL"],
        "broker_transport_options": {
            "visibility_timeout": int(config["CELERY_VISIBILITY_TIMEOUT"]),
            "socket_connect_timeout": 5, "socket_timeout": 10,
        },
        "broker_connection_retry_on_startup": True,
        # An upload must not hang on a broker that is down: two quick tries, then the re-send's job.
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5,
                                      "interval_max": 1},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_max_memory_per_child": int(config["CELERY_WORKER_MAX_MEMORY_KB"]),
        "task_ignore_result": True,
        "task_routes": {name: {"queue": queue} for name, queue in QUEUES.items()},
        "task_default_queue": "photos",
        "worker_hijack_root_logger": False,  # the app's logging (LOG_LEVEL, one format) stays in charge
    }
    settings.update(config.get("CELERY") or {})
    return settings


def init_app(app: Flask, *, tasks: Mapping[str, Callable[..., object]]) -> Celery:
    """Build this app's Celery app and register ``tasks`` (name → function: the app passes the photo job
    and the outbox delivery) on it; nothing connects to the broker yet."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery("scarwatch", task_cls=FlaskTask)
    celery.config_from_object(celery_settings(app.config))
    for name, function in tasks.items():
        celery.task(name=name)(function)
    app.extensions["celery"] = celery
    return celery

