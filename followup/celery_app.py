"""Celery wiring for ``JOB_BACKEND=celery``: the task runs the same job function as the in-process worker.

Run a worker with ``celery -A followup.celery_app worker``; it builds its own app with the same factory.
"""
from __future__ import annotations

import os

from celery import Celery

celery = Celery("scarwatch", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
celery.conf.update(task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1)

_app = None


def _flask_app():
    global _app
    if _app is None:
        from app import create_app

        _app = create_app()
    return _app


@celery.task(name="scarwatch.analyze_photo", autoretry_for=(ConnectionError,), max_retries=5)
def analyze_photo_task(photo_id: int) -> None:
    from followup.jobs import run_photo_job

    with _flask_app().app_context():
        run_photo_job(photo_id)
