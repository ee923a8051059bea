"""The scheduler: APScheduler settings, and the database lease that lets exactly one process sweep."""
from __future__ import annotations

from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select, update

from followup.db import db, utcnow
from followup.models import OutboundMessage, SchedulerLock
from followup.outreach import scheduler
from tests.followup.helpers import enrol


def test_jobs_run_in_utc_coalesced_one_at_a_time(app):
    runner = scheduler.ReminderScheduler(app)
    assert isinstance(runner.scheduler, BackgroundScheduler)
    assert str(runner.scheduler.timezone) == "UTC"
    runner.scheduler.start(paused=True)  # jobs get their defaults when the scheduler starts
    try:
        jobs = {job.id: job for job in runner.scheduler.get_jobs()}
        assert set(jobs) == {"reminders-sweep", "scheduler-lease"}
        for job in jobs.values():
            assert job.coalesce is True and job.max_instances == 1 and job.misfire_grace_time == 30
        assert jobs["reminders-sweep"].trigger.interval == timedelta(minutes=1)
    finally:
        runner.scheduler.shutdown(wait=False)


def test_a_second_scheduler_does_nothing_until_the_first_goes_quiet(app):
    first, second = scheduler.ReminderScheduler(app), scheduler.ReminderScheduler(app)
    assert first.sweep() is not None
    assert second.sweep() is None  # stands by
    assert first.sweep() is not None  # renewing its own lease
    holder = db.session.execute(select(SchedulerLock)).scalar_one()
    assert holder.holder == first.holder
    # The first process dies: its heartbeat stops; after the lease runs out the second takes over.
    db.session.execute(update(SchedulerLock).values(heartbeat_at=utcnow() - scheduler.LEASE - timedelta(seconds=1)))
    db.session.commit()
    assert second.sweep() is not None
    assert first.sweep() is None
    second.shutdown()  # releases the lease
    db.session.expire_all()
    assert db.session.execute(select(SchedulerLock)).scalar_one_or_none() is None
    assert first.heartbeat() is True


def test_embedded_only_when_enabled_and_started_once(app):
    app.config["SCHEDULER_ENABLED"] = False
    assert scheduler.start_embedded(app) is None
    app.config["SCHEDULER_ENABLED"] = True
    embedded = scheduler.start_embedded(app)
    try:
        assert embedded is not None and embedded.scheduler.running
        assert scheduler.start_embedded(app) is embedded
    finally:
        embedded.shutdown(wait=True)
        app.extensions["reminder_scheduler"] = None


def test_an_urgent_alert_wakes_the_embedded_scheduler_to_send_at_once(sms_app, fake_twilio, world):
    from followup.triage.alerts import raise_alert

    world.derm.phone = "+447700900998"
    _, site = enrol(world.clinic, "+447700900701", derm=world.derm)
    sms_app.config["SCHEDULER_ENABLED"] = True
    embedded = scheduler.start_embedded(sms_app)
    try:
        raise_alert(clinic_id=world.clinic.id, site_id=site.id, photo_id=None, kind="change", priority=1,
                    score=0.95, reasons=["new nodule"])
        db.session.commit()
        job = embedded.scheduler.get_job("outbox-now")
        assert job is not None
        embedded.deliver_now()  # what the job runs, without waiting for it
    finally:
        embedded.shutdown(wait=True)
        sms_app.extensions["reminder_scheduler"] = None
    assert [m.to for m in fake_twilio.messages] == [world.derm.phone]
    db.session.expire_all()
    assert db.session.execute(select(OutboundMessage.status)).scalar_one() == "sent"


def test_the_scheduler_command_stands_by_while_another_holds_the_lock(app, runner, monkeypatch):
    from apscheduler.schedulers.blocking import BlockingScheduler

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C as soon as it starts

    monkeypatch.setattr(BlockingScheduler, "start", interrupted)
    assert scheduler.acquire_lease("other-host:1:abc") is True
    result = runner.invoke(args=["scheduler"])
    assert result.exit_code == 0, result.output
    assert "standing by" in result.output
    assert scheduler.lease_holder().holder == "other-host:1:abc"  # untouched by the stand-by
    scheduler.release_lease("other-host:1:abc")
    result = runner.invoke(args=["scheduler"])
    assert "scheduler running" in result.output
    db.session.expire_all()
    assert scheduler.lease_holder() is None  # released on the way out


def test_under_celery_an_urgent_text_is_sent_by_a_task_after_the_commit(app, monkeypatch):
    """Web and worker processes run no scheduler: the outbox task goes to the messages queue, and only once
    the transaction that queued the text is committed (a worker could not see it before)."""
    from followup.analysis import jobs
    from followup.analysis.celery_app import DELIVER_OUTBOX, QUEUES
    from followup.outreach import scheduler

    app.config["JOB_BACKEND"] = "celery"
    sent = []
    monkeypatch.setattr(jobs, "send_task", lambda name, *args: sent.append(name) or True)
    scheduler.wake_soon(app)
    assert sent == [], "not before the commit"
    db.session.commit()
    assert sent == [DELIVER_OUTBOX] and QUEUES[DELIVER_OUTBOX] == "messages"
    db.session.commit()
    assert sent == [DELIVER_OUTBOX], "once"


def test_under_celery_the_scheduler_sends_lost_photos_again(app):
    app.config.update(JOB_BACKEND="celery", PHOTO_RESEND_SECONDS=15)
    runner = scheduler.ReminderScheduler(app)
    runner.scheduler.start(paused=True)
    try:
        job = runner.scheduler.get_job("photos-resend")
        assert job.trigger.interval == timedelta(seconds=15) and job.coalesce is True and job.max_instances == 1
        assert runner.resend_photos() == {"photos_resent": 0, "photos_send_failed": 0}, "nothing waits"
    finally:
        runner.scheduler.shutdown(wait=False)


def test_under_celery_the_sweep_leaves_the_sends_to_the_messages_workers(app, world, monkeypatch):
    """The sweep decides and queues; the outbox goes to a deliver_outbox task (the messages queue), whose
    worker claims and sends it exactly as the sweep would."""
    from followup.analysis import jobs
    from followup.analysis.celery_app import DELIVER_OUTBOX
    from followup.outreach import outbox
    from followup.outreach.sweep import deliver_outbox

    app.config["JOB_BACKEND"] = "celery"
    sent = []
    monkeypatch.setattr(jobs, "send_task", lambda name, *args: sent.append(name) or True)
    outbox.enqueue(key="drill:1", clinic_id=world.clinic.id, user_id=world.derm.id, to="+447700900001",
                      body="hello", purpose="alert_urgent")
    db.session.commit()
    runner = scheduler.ReminderScheduler(app)
    summary = runner.sweep()
    assert summary["outbox_handed_to_workers"] == 1 and summary["sent"] == 0 and sent == [DELIVER_OUTBOX]
    assert db.session.execute(select(OutboundMessage.status)).scalar_one() == "pending", "not sent by the sweep"
    with app.app_context():
        outcome = deliver_outbox()  # what the messages worker runs
    assert sum(outcome.values()) >= 1
    db.session.expire_all()
    assert db.session.execute(select(OutboundMessage.status)).scalar_one() != "pending"
