"""The job queue behind photo analysis. The database is the source of truth.

A photo row in status ``queued`` *is* the job. A worker claims it with one conditional UPDATE
(queued → processing), so two workers, a retried Celery task or a restarted process never analyse the same
photo at once, and a process killed mid-job leaves a row that is picked up again once it is stale.
Jobs receive ids only, so the same function runs in a thread here or in a Celery worker.
An attempt that raises puts the photo back in the queue with ``next_attempt_at`` after an exponential backoff
(`retry_delay`; no worker claims it before then, and the pages and the API show that time); after
``MAX_ATTEMPTS`` the photo is failed and a person is asked to look at it.

Backends (``JOB_BACKEND``):
- ``inprocess`` (default): a worker thread in the serving process (``make run``) or ``flask --app app worker``.
- ``celery``: ``enqueue`` sends a Celery task; run ``celery -A followup.celery_app worker``.
- ``sync``: run the job inside the request (tests, demos).
- ``deferred``: only record the job; something else runs it later (tests of crash recovery).
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Optional

from flask import Flask, current_app
from sqlalchemy import or_, select, update

from followup.db import db, utcnow
from followup.models import Photo

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=10)  # a 'processing' row older than this belongs to a dead worker
MAX_ATTEMPTS = 3


def retry_delay(attempts: int) -> timedelta:
    """How long a photo whose attempt number ``attempts`` failed waits before the next one: exponential,
    ``PHOTO_RETRY_SECONDS`` (default 120) times 4 to the power of the attempts before, at most an hour — by
    default 2 minutes, then 8: a passing outage (storage, database, a model file being replaced) is waited
    out instead of spending every attempt within milliseconds."""
    base = float(current_app.config.get("PHOTO_RETRY_SECONDS", 120))
    return timedelta(seconds=min(base * 4 ** max(0, attempts - 1), 3600.0))


def _runnable(now):
    """Queued and due (its backoff over), or left in processing by a dead worker; attempts left."""
    return (Photo.attempts < MAX_ATTEMPTS) & or_(
        (Photo.status == "queued") & (Photo.next_attempt_at.is_(None) | (Photo.next_attempt_at <= now)),
        (Photo.status == "processing") & (Photo.status_changed_at < now - STALE_AFTER),
    )


def claim(photo_id: int) -> bool:
    """Atomically take a due queued (or stale) photo; False if someone else has it, it is finished, or it is
    waiting for its next attempt (``next_attempt_at``)."""
    now = utcnow()
    result = db.session.execute(
        update(Photo)
        .where(Photo.id == photo_id, _runnable(now))
        .values(status="processing", status_changed_at=now, attempts=Photo.attempts + 1, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount == 1


def pending_photo_ids(limit: int = 20) -> list[int]:
    """Queued photos that are due, oldest first, and those a dead worker left in processing."""
    return list(
        db.session.execute(
            select(Photo.id).where(_runnable(utcnow())).order_by(Photo.received_at, Photo.id).limit(limit)
        ).scalars()
    )


def run_photo_job(photo_id: int) -> None:
    """Claim and process one photo; safe to call twice or concurrently."""
    from followup.processing import process_photo

    if not claim(photo_id):
        _resend_if_early(photo_id)
        return
    photo = db.session.get(Photo, photo_id)
    try:
        process_photo(photo)
    except Exception as exc:  # noqa: BLE001 - a job must record its failure, whatever it was
        db.session.rollback()
        photo = db.session.get(Photo, photo_id)
        log.exception("photo %s: processing failed (attempt %d of %d)", photo_id, photo.attempts, MAX_ATTEMPTS)
        # Retry transient failures after a backoff; after MAX_ATTEMPTS the photo is visibly failed (and a person
        # asked to look), never silently dropped.
        now = utcnow()
        photo.status = "failed" if photo.attempts >= MAX_ATTEMPTS else "queued"
        photo.status_detail = f"{type(exc).__name__}: {exc}"
        photo.status_changed_at = now
        photo.next_attempt_at = now + retry_delay(photo.attempts) if photo.status == "queued" else None
        if photo.status == "failed":
            _needs_review(photo)
        db.session.commit()
        if photo.status == "queued" and current_app.config["JOB_BACKEND"] == "celery":
            enqueue_photo(photo_id, not_before=photo.next_attempt_at)  # nothing polls under Celery: send it again


def _resend_if_early(photo_id: int) -> None:
    """Under Celery a task may arrive before its photo's next attempt is due (a redelivery, a duplicate): it
    is sent again for that time rather than dropped, since nothing else would run the photo."""
    if current_app.config["JOB_BACKEND"] != "celery":
        return  # the in-process worker polls: it finds the photo once it is due
    row = db.session.execute(
        select(Photo.status, Photo.next_attempt_at, Photo.attempts).where(Photo.id == photo_id)).first()
    if row is not None and row.status == "queued" and row.attempts < MAX_ATTEMPTS \
            and row.next_attempt_at is not None and row.next_attempt_at > utcnow():
        enqueue_photo(photo_id, not_before=row.next_attempt_at)


def _needs_review(photo: Photo) -> None:
    from followup import alerts
    from followup.models import Site

    site = db.session.get(Site, photo.site_id)
    alerts.raise_alert(clinic_id=site.patient.clinic_id, site_id=site.id, photo_id=photo.id, kind="needs_review",
                       priority=2, score=1.0,
                       reasons=["The photo could not be analysed after several tries: please look at it by eye."])


def fail_exhausted() -> None:
    """Photos whose last allowed attempt died with its process: failed, and a person is asked to look."""
    stuck = db.session.execute(
        select(Photo).where(Photo.status == "processing", Photo.attempts >= MAX_ATTEMPTS,
                            Photo.status_changed_at < utcnow() - STALE_AFTER)
    ).scalars().all()
    for photo in stuck:
        photo.status, photo.status_changed_at = "failed", utcnow()
        photo.status_detail = "The analysis stopped with its process too many times."
        _needs_review(photo)
    db.session.commit()


def drain(limit: int = 1000) -> int:
    """Run every pending job now, in this thread; returns how many were taken."""
    fail_exhausted()
    done = 0
    while done < limit:
        ids = pending_photo_ids()
        if not ids:
            break
        for photo_id in ids:
            run_photo_job(photo_id)
            done += 1
    return done


class InProcessWorker:
    """A daemon thread that drains the queue whenever woken, and every few seconds regardless."""

    def __init__(self, app: Flask, poll_seconds: float = 5.0):
        self.app = app
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="photo-worker", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Loop until stopped (the thread's body, or a foreground worker process)."""
        while not self._stop.is_set():
            with self.app.app_context():
                try:
                    drain()
                except Exception:  # noqa: BLE001 - the worker must outlive a broken database moment
                    log.exception("photo worker: drain failed")
                finally:
                    db.session.remove()
            self._wake.wait(self.poll_seconds)
            self._wake.clear()


def init_app(app: Flask) -> None:
    backend = app.config["JOB_BACKEND"]
    if backend not in ("inprocess", "celery", "sync", "deferred"):
        raise RuntimeError(f"JOB_BACKEND must be inprocess, celery, sync or deferred, not {backend!r}")
    app.extensions["photo_worker"] = InProcessWorker(app) if backend == "inprocess" else None


def enqueue_photo(photo_id: int, *, not_before: Optional[datetime] = None) -> None:
    """Hand a stored photo to the configured backend (the row is already committed as queued).

    ``not_before``: a retry's time (the photo's ``next_attempt_at``); Celery gets the task with that ETA, the
    in-process worker finds the photo once it is due, ``sync`` leaves it to a worker.
    """
    backend = current_app.config["JOB_BACKEND"]
    if backend == "sync":
        if not_before is None:
            run_photo_job(photo_id)
    elif backend == "celery":
        from followup.celery_app import analyze_photo_task

        if not_before is None:
            analyze_photo_task.delay(photo_id)
        elif not analyze_photo_task.app.conf.task_always_eager:  # eager (tests) runs at once: it cannot wait
            analyze_photo_task.apply_async((photo_id,), eta=not_before)
    elif backend == "inprocess":
        worker: InProcessWorker = current_app.extensions["photo_worker"]
        worker.start()
        worker.wake()
    # deferred: the row is the job; a worker started later finds it.


def start_worker(app: Flask) -> Optional[InProcessWorker]:
    """Start the in-process worker (it first picks up whatever a previous process left queued)."""
    worker = app.extensions.get("photo_worker")
    if worker is not None:
        worker.start()
    return worker
