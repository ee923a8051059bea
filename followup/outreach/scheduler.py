"""APScheduler running the reminder sweep every minute, in exactly one process.

``make run`` embeds it in its single serving process (``SCHEDULER_ENABLED``, default on); production runs
``flask --app app scheduler`` next to the web servers (which then set ``SCHEDULER_ENABLED=0``). Either way a
lease in the database (`SchedulerLock`, renewed every 20 s, lost after 2 minutes of silence) decides which
process works: a second scheduler stands by and does nothing until the first one stops. The sweep itself is
safe to run concurrently (rows are claimed), so the lease saves work; it is not what prevents duplicates.

Jobs run in UTC with ``coalesce`` (missed runs collapse into one), ``max_instances=1`` (a slow sweep is never
overlapped by the next) and a misfire grace of 30 s (a run more than that late is skipped: the next is due
within the minute anyway).
"""
from __future__ import annotations

import atexit
import logging
import os
import socket
import uuid
from datetime import timedelta, timezone
from typing import Optional

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask
from sqlalchemy import delete, or_, select, update

from followup.analysis import jobs
from followup.analysis.celery_app import DELIVER_OUTBOX
from followup.db import db, insert_ignoring_conflicts, utcnow
from followup.dicom.dicomweb import push_due
from followup.models import SchedulerLock
from followup.outreach.sweep import deliver_outbox, dispatch

log = logging.getLogger(__name__)

LOCK_NAME = "reminders"
LEASE = timedelta(minutes=2)
HEARTBEAT_SECONDS = 20
SWEEP_SECONDS = 60
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}


def new_holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire_lease(holder: str) -> bool:
    """Take or renew the lease; False while another process holds a fresh one."""

    now = utcnow()
    renewed = db.session.execute(
        update(SchedulerLock)
        .where(SchedulerLock.name == LOCK_NAME,
               or_(SchedulerLock.holder == holder, SchedulerLock.heartbeat_at < now - LEASE))
        .values(holder=holder, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not renewed:
        renewed = db.session.execute(
            insert_ignoring_conflicts(SchedulerLock, ["name"])
            .values(name=LOCK_NAME, holder=holder, heartbeat_at=now, acquired_at=now)
            .returning(SchedulerLock.name)
        ).first() is not None
    db.session.commit()
    return bool(renewed)


def release_lease(holder: str) -> None:
    db.session.execute(delete(SchedulerLock).where(SchedulerLock.name == LOCK_NAME, SchedulerLock.holder == holder))
    db.session.commit()


def lease_holder() -> Optional[SchedulerLock]:
    return db.session.execute(select(SchedulerLock).where(SchedulerLock.name == LOCK_NAME)).scalar_one_or_none()


class ReminderScheduler:
    """The sweep every minute and the lease heartbeat; `blocking` for the foreground command."""

    def __init__(self, app: Flask, *, blocking: bool = False) -> None:
        self.app = app
        if app.config.get("LOG_LEVEL", "INFO") != "DEBUG":  # not a line per job run, three times a minute
            logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
            logging.getLogger("apscheduler.scheduler").setLevel(logging.WARNING)
        self.holder = new_holder_id()
        scheduler_class = BlockingScheduler if blocking else BackgroundScheduler
        self.scheduler = scheduler_class(timezone=timezone.utc, job_defaults=dict(JOB_DEFAULTS))
        self.scheduler.add_job(self.heartbeat, "interval", seconds=HEARTBEAT_SECONDS, id="scheduler-lease",
                               next_run_time=utcnow())
        self.scheduler.add_job(self.sweep, "interval", seconds=SWEEP_SECONDS, id="reminders-sweep",
                               next_run_time=utcnow() + timedelta(seconds=2))
        if app.config["JOB_BACKEND"] == "celery":  # the row is the job: lost messages are sent again
            self.scheduler.add_job(self.resend_photos, "interval", seconds=app.config["PHOTO_RESEND_SECONDS"],
                                   id="photos-resend", next_run_time=utcnow() + timedelta(seconds=1))

    def _guarded(self, what: str, run, failed=None):
        """``run()`` in an app context; an error is logged and rolled back, and ``failed`` returned: a database
        hiccup must not kill the scheduler's thread, and the next period tries again."""
        with self.app.app_context():
            try:
                return run()
            except Exception:  # noqa: BLE001 - see above
                log.exception("%s failed", what)
                db.session.rollback()
                return failed
            finally:
                db.session.remove()

    def heartbeat(self) -> bool:
        return self._guarded("scheduler: lease heartbeat", lambda: acquire_lease(self.holder), failed=False)

    def sweep(self) -> Optional[dict[str, int]]:
        """One reminder sweep and DICOMweb push pass, if this process holds the lease."""
        if not self.heartbeat():
            log.debug("scheduler: another process holds the lease; standing by")
            return None
        return self._guarded("reminder sweep", self._sweep_once)

    def _sweep_once(self) -> dict[str, int]:
        on_workers = self.app.config["JOB_BACKEND"] == "celery"
        summary = dispatch(send=not on_workers)
        if on_workers:  # the sends run on the messages workers; the outbox rows keep exactly-once
            summary["outbox_handed_to_workers"] = int(jobs.send_task(DELIVER_OUTBOX))
        summary.update(push_due())  # accepted photos to the image archive, when DICOMWEB_URL is set
        if any(summary.get(k) for k in ("queued", "sent", "escalated", "failed", "unknown", "errors",
                                        "dicom_sent", "dicom_retrying", "dicom_failed")):
            log.info("reminder sweep: %s", summary)
        return summary

    def resend_photos(self) -> Optional[dict[str, int]]:
        """Send queued and stale photos to Celery again (`followup.analysis.jobs.resend_due`), if this process holds
        the lease."""
        if not self.heartbeat():
            return None
        return self._guarded("photo re-send", jobs.resend_due)

    def deliver_now(self) -> None:
        """Send the outbox at once (an urgent alert was queued); claims keep this safe next to a sweep."""
        self._guarded("outbox delivery", deliver_outbox)

    def wake_soon(self, seconds: float = 2.0) -> None:
        if self.scheduler.running:
            self.scheduler.add_job(self.deliver_now, "date", run_date=utcnow() + timedelta(seconds=seconds),
                                   id="outbox-now", replace_existing=True)

    def start(self) -> None:
        log.info("scheduler %s starting (reminder sweep every %d s)", self.holder, SWEEP_SECONDS)
        self.scheduler.start()

    def shutdown(self, *, wait: bool = False) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        with self.app.app_context():
            try:
                release_lease(self.holder)
            except Exception:  # noqa: BLE001 - at exit the database may be gone; the lease then just expires
                log.warning("scheduler: could not release the lease")
            finally:
                db.session.remove()


def init_app(app: Flask) -> None:
    """No scheduler yet (`start_embedded` starts one), and the hook that asks for the outbox to be sent soon:
    code that queues an urgent text calls ``app.extensions["wake_outbox"]()`` without knowing who sends it."""
    app.extensions["reminder_scheduler"] = None
    app.extensions["wake_outbox"] = lambda: wake_soon(app)


def start_embedded(app: Flask) -> Optional[ReminderScheduler]:
    """Start the background scheduler in this process when ``SCHEDULER_ENABLED`` (``make run``)."""
    if not app.config["SCHEDULER_ENABLED"]:
        return None
    if app.extensions.get("reminder_scheduler") is None:
        embedded = ReminderScheduler(app)
        embedded.start()
        atexit.register(embedded.shutdown)
        app.extensions["reminder_scheduler"] = embedded
    return app.extensions["reminder_scheduler"]


def wake_soon(app: Flask) -> None:
    """Ask for the outbox to be sent within seconds: by this process's scheduler if it runs one, else under
    Celery by a ``deliver_outbox`` task on the ``messages`` queue, sent once the caller's transaction commits
    (the messages it queued are then visible to the worker). Otherwise the next sweep sends it."""
    embedded: Optional[ReminderScheduler] = app.extensions.get("reminder_scheduler")
    if embedded is not None:
        embedded.wake_soon()
    elif app.config["JOB_BACKEND"] == "celery":
        jobs.after_commit(lambda: jobs.send_task(DELIVER_OUTBOX))
