"""The job queue behind photo analysis. The database is the source of truth.

A photo row in status ``queued`` *is* the job. A worker claims it with one conditional UPDATE
(queued → processing), so two workers, a redelivered Celery task or a restarted process never analyse the same
photo at once. While it works, the worker's heartbeat renews the claim every few seconds; a claim silent for
``PHOTO_STALE_SECONDS`` belongs to a dead worker (killed, out of memory, its machine gone) and the photo is taken
again. The results are written only while the claim is still this worker's (`check_claim`), so a worker that
was wrongly given up for dead cannot write a second analysis.
Jobs receive ids only, so the same function runs in a thread here or in a Celery worker.
An attempt that raises puts the photo back in the queue with ``next_attempt_at`` after an exponential backoff
(`retry_delay`; no worker claims it before then, and the pages and the API show that time); after
``MAX_ATTEMPTS`` the photo is failed and a person is asked to look at it.

Backends (``JOB_BACKEND``):
- ``inprocess`` (default): a worker thread in the serving process (``make run``) or ``flask --app app worker``.
- ``celery``: ``enqueue_photo`` sends a Celery task after the row is committed; run
  ``celery -A make_celery worker -Q photos``. Nothing depends on the broker keeping the message: the scheduler
  sends queued photos (due, and not sent recently) and stale ones again every ``PHOTO_RESEND_SECONDS``
  (`resend_due`), so a lost message, a broker restarted empty or a broker error at upload delays a photo,
  never loses it.
- ``sync``: run the job inside the request (tests, demos).
- ``deferred``: only record the job; something else runs it later (tests of crash recovery).
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Callable, Optional

from flask import Flask, current_app
from sqlalchemy import event, or_, select, update

from followup.analysis.celery_app import ANALYZE_PHOTO
from followup.db import db, utcnow
from followup.models import Photo, Site
from followup.models.alerts import AlertKind, AlertPriority
from followup.models.photos import PhotoStatus
from followup.triage import alerts

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(seconds=120)  # default of PHOTO_STALE_SECONDS: a claim this silent has a dead worker
MAX_ATTEMPTS = 3
RESEND_BACKOFF_CAP = 20  # a photo waiting in a backlog is sent again at most every 20 resend periods


#: What is done with a claimed photo (`followup.analysis.processing.process_photo`, given at `init_app`).
PhotoJob = Callable[[Photo], None]


class ClaimLost(Exception):
    """This worker's claim on a photo was taken over (it was given up for dead): it must not write results."""


def stale_after() -> timedelta:
    return timedelta(seconds=float(current_app.config.get("PHOTO_STALE_SECONDS", STALE_AFTER.total_seconds())))


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
        (Photo.status == PhotoStatus.QUEUED) & (Photo.next_attempt_at.is_(None) | (Photo.next_attempt_at <= now)),
        (Photo.status == PhotoStatus.PROCESSING) & (Photo.status_changed_at < now - stale_after()),
    )


def claim(photo_id: int) -> bool:
    """Atomically take a due queued (or stale) photo; False if someone else has it, it is finished, or it is
    waiting for its next attempt (``next_attempt_at``)."""
    now = utcnow()
    result = db.session.execute(
        update(Photo)
        .where(Photo.id == photo_id, _runnable(now))
        .values(status=PhotoStatus.PROCESSING, status_changed_at=now, attempts=Photo.attempts + 1, next_attempt_at=None)
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
    """Claim and process one photo; safe to call twice or concurrently (the second call does nothing)."""
    process_photo: PhotoJob = current_app.extensions["photo_job"]
    if not claim(photo_id):
        return  # finished, someone else's, or waiting for its next attempt (the re-send brings it back then)
    photo = db.session.get(Photo, photo_id)
    db.session.info["photo_claim"] = (photo_id, photo.attempts)
    heartbeat = _Heartbeat(current_app._get_current_object(), photo_id, photo.attempts)
    heartbeat.start()
    try:
        process_photo(photo)
    except ClaimLost:
        db.session.rollback()
        log.warning("photo %s: attempt %d was taken over by another worker; its results are dropped",
                    photo_id, heartbeat.attempt)
    except Exception as exc:  # noqa: BLE001 - a job must record its failure, whatever it was
        db.session.rollback()
        _record_failure(photo_id, heartbeat.attempt, exc)
    finally:
        heartbeat.stop()
        db.session.info.pop("photo_claim", None)


def _record_failure(photo_id: int, attempt: int, exc: Exception) -> None:
    photo = db.session.get(Photo, photo_id)
    if photo.status != PhotoStatus.PROCESSING or photo.attempts != attempt:
        return  # another worker holds the photo now: its outcome is not ours to write
    log.error("photo %s: processing failed (attempt %d of %d)", photo_id, photo.attempts, MAX_ATTEMPTS,
              exc_info=exc)
    # Retry transient failures after a backoff; after MAX_ATTEMPTS the photo is visibly failed (and a person
    # asked to look), never silently dropped. Under Celery the re-send (`resend_due`) sends it once it is due.
    now = utcnow()
    photo.status = PhotoStatus.FAILED if photo.attempts >= MAX_ATTEMPTS else PhotoStatus.QUEUED
    photo.status_detail = f"{type(exc).__name__}: {exc}"
    photo.status_changed_at = now
    photo.next_attempt_at = now + retry_delay(photo.attempts) if photo.status == PhotoStatus.QUEUED else None
    photo.enqueued_at = None  # no message is on its way for the retry
    if photo.status == PhotoStatus.FAILED:
        _needs_review(photo)
    db.session.commit()


def check_claim(photo: Photo) -> None:
    """Inside a claimed job, lock the photo's row and check the claim is still this worker's before its results
    are written; raises `ClaimLost` otherwise. Outside a job (a test, the demo seeding) it does nothing."""
    held = db.session.info.get("photo_claim")
    if held is None or held[0] != photo.id:
        return
    attempts = db.session.execute(
        select(Photo.attempts).where(Photo.id == photo.id).with_for_update()).scalar_one()
    if attempts != held[1]:
        raise ClaimLost(f"photo {photo.id}: attempt {held[1]} was taken over by attempt {attempts}")


class _Heartbeat:
    """Renews a claim (``status_changed_at``) every sixth of ``PHOTO_STALE_SECONDS`` while the job runs, in
    its own thread and database session, so only a dead worker's photo ever looks stale."""

    def __init__(self, app: Flask, photo_id: int, attempt: int):
        self.app, self.photo_id, self.attempt = app, photo_id, attempt
        self.interval = max(0.05, float(app.config.get("PHOTO_STALE_SECONDS", 120.0)) / 6)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"photo-{photo_id}-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self.app.app_context():
                try:
                    db.session.execute(
                        update(Photo)
                        .where(Photo.id == self.photo_id, Photo.status == PhotoStatus.PROCESSING,
                               Photo.attempts == self.attempt)
                        .values(status_changed_at=utcnow())
                        .execution_options(synchronize_session=False))
                    db.session.commit()
                except Exception:  # noqa: BLE001 - a missed beat is retried; only a long silence matters
                    log.warning("photo %s: heartbeat failed", self.photo_id, exc_info=True)
                    db.session.rollback()
                finally:
                    db.session.remove()


def _needs_review(photo: Photo) -> None:
    site = db.session.get(Site, photo.site_id)
    alerts.raise_alert(clinic_id=site.patient.clinic_id, site_id=site.id, photo_id=photo.id,
                       kind=AlertKind.NEEDS_REVIEW, priority=AlertPriority.HIGH, score=1.0,
                       reasons=["The photo could not be analysed after several tries: please look at it by eye."])


def fail_exhausted() -> None:
    """Photos whose last allowed attempt died with its process: failed, and a person is asked to look."""
    stuck = db.session.execute(
        select(Photo).where(Photo.status == PhotoStatus.PROCESSING, Photo.attempts >= MAX_ATTEMPTS,
                            Photo.status_changed_at < utcnow() - stale_after())
    ).scalars().all()
    for photo in stuck:
        photo.status, photo.status_changed_at = PhotoStatus.FAILED, utcnow()
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


def init_app(app: Flask, *, job: PhotoJob) -> None:
    """The backend ``JOB_BACKEND`` names, running ``job`` on each claimed photo (the app passes the analysis:
    the queue knows how to hand out photos, not what is done with them)."""
    backend = app.config["JOB_BACKEND"]
    if backend not in ("inprocess", "celery", "sync", "deferred"):
        raise RuntimeError(f"JOB_BACKEND must be inprocess, celery, sync or deferred, not {backend!r}")
    app.extensions["photo_job"] = job
    app.extensions["photo_worker"] = InProcessWorker(app) if backend == "inprocess" else None


def enqueue_photo(photo_id: int) -> None:
    """Hand a stored photo to the configured backend; call it after the row is committed as queued.

    Under Celery a broker error is logged, not raised: the photo stays queued and the scheduler's re-send
    (`resend_due`) sends it within ``PHOTO_RESEND_SECONDS``.
    """
    backend = current_app.config["JOB_BACKEND"]
    if backend == "sync":
        run_photo_job(photo_id)
    elif backend == "celery":
        _send(photo_id)
    elif backend == "inprocess":
        worker: InProcessWorker = current_app.extensions["photo_worker"]
        worker.start()
        worker.wake()
    # deferred: the row is the job; a worker started later finds it.


def _send(photo_id: int) -> bool:
    return send_task(ANALYZE_PHOTO, photo_id)


def send_task(name: str, *args: object) -> bool:
    """Send a Celery task by name (routed to its queue); False, logged, when the broker refused it. Callers
    keep the work in the database, so a lost or unsent task is only late: the scheduler sends it again."""
    try:
        current_app.extensions["celery"].send_task(name, args=args)
    except Exception:  # noqa: BLE001 - whatever the broker's error, the row is the job and will be sent again
        log.warning("%s%s could not be sent to the job queue; it will be sent again", name, args, exc_info=True)
        return False
    return True


def after_commit(callback: Callable[[], object]) -> None:
    """Run ``callback`` once the current session's transaction commits (a task sent earlier could reach a
    worker before the rows it names are visible)."""
    event.listen(db.session(), "after_commit", lambda _session: callback(), once=True)


def resend_due(now: Optional[datetime] = None, *, limit: int = 1000) -> dict[str, int]:
    """Send again, under Celery, the photos whose message may be lost; the scheduler calls it every
    ``PHOTO_RESEND_SECONDS``.

    A photo is sent again when it is runnable (queued and due, or processing with a stale claim) and no message
    was sent for it within ``PHOTO_RESEND_SECONDS`` — or, for a photo that has long been waiting behind others,
    within the time it had already waited when last sent (at most ``RESEND_BACKOFF_CAP`` periods): a lost
    message delays a photo by about one period, and a long backlog costs a few duplicate messages, which the
    claim makes harmless. Photos whose last allowed attempt died are failed first (`fail_exhausted`).
    Returns ``{"photos_resent": n, "photos_send_failed": m}``.
    """
    fail_exhausted()
    now = now or utcnow()
    period = timedelta(seconds=float(current_app.config["PHOTO_RESEND_SECONDS"]))
    rows = db.session.execute(
        select(Photo.id, Photo.received_at, Photo.enqueued_at).where(_runnable(now))
        .order_by(Photo.received_at, Photo.id).limit(limit)
    ).all()
    due = [row.id for row in rows if row.enqueued_at is None
           or now - row.enqueued_at >= max(period, min(row.enqueued_at - row.received_at,
                                                        period * RESEND_BACKOFF_CAP))]
    if not due:
        return {"photos_resent": 0, "photos_send_failed": 0}
    db.session.execute(update(Photo).where(Photo.id.in_(due)).values(enqueued_at=now)
                       .execution_options(synchronize_session=False))
    db.session.commit()  # recorded before sending: a message is never sent for a photo not marked as sent
    sent = failed = 0
    for photo_id in due:
        if _send(photo_id):
            sent += 1
        else:
            failed = len(due) - sent  # the broker is down: the rest waits for the next period
            break
    if sent or failed:
        log.info("photo re-send: %d sent again, %d could not be sent", sent, failed)
    return {"photos_resent": sent, "photos_send_failed": failed}


def start_worker(app: Flask) -> Optional[InProcessWorker]:
    """Start the in-process worker (it first picks up whatever a previous process left queued)."""
    worker = app.extensions.get("photo_worker")
    if worker is not None:
        worker.start()
    return worker
