"""The reminder sweep: what is sent when, what cancels it, quiet hours, one a day, escalation, alerts.

Time is moved by the sweep's ``now`` (the CLI's ``--now``); SMS go to the loopback Twilio (`FakeTwilio`)
through the real twilio client. Helpers here are imported by the other reminder test files.
"""
from __future__ import annotations

import json
import random
from datetime import date, datetime, timezone
from typing import Optional
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select

from followup import reminders
from followup.alerts import raise_alert
from followup.db import db
from followup.models import Alert, Clinic, OutboundMessage, Patient, Photo, PlanItem, Reminder, Site
from followup.patients import create_patient, create_site
from notifications.fake_twilio import DEFAULT_MESSAGING_SERVICE_SID, FakeTwilio
from notifications.twilio_sender import RetryPolicy, TwilioSender

EXCISION = date(2027, 1, 4)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def local(tz: str, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


def make_sender(fake: FakeTwilio, **overrides) -> TwilioSender:
    """The real TwilioSender on the fake, without real waits."""
    settings = dict(account_sid=fake.account_sid, auth_token=fake.auth_token,
                    messaging_service_sid=DEFAULT_MESSAGING_SERVICE_SID, api_base_url=fake.base_url,
                    timeout_seconds=2.0, retry=RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0,
                                                           settle_delay=0.0),
                    lookup_settle_seconds=0.0, sleep=lambda seconds: None, rng=random.Random(3))
    settings.update(overrides)
    return TwilioSender(**settings)


@pytest.fixture
def fake_twilio():
    with FakeTwilio() as fake:
        yield fake


def _no_fsync(dbapi_connection, _record) -> None:
    """Tests simulate no power cuts, and a sweep commits often: skip waiting for the disk."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        dbapi_connection.execute("PRAGMA synchronous=OFF")
    else:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
        dbapi_connection.commit()


@pytest.fixture
def sms_app(app, fake_twilio):
    """The app with its SMS going to the fake (and the fake's token signing webhooks)."""
    event.listen(db.engine, "connect", _no_fsync)
    db.session.remove()
    db.engine.dispose()
    app.config["TWILIO_AUTH_TOKEN"] = fake_twilio.auth_token
    app.extensions["sms_sender"] = make_sender(fake_twilio)
    return app


def enrol(clinic: Clinic, phone: str, *, diagnosis: str = "bcc", stage: Optional[str] = None,
          tz: str = "Europe/London", excision: date = EXCISION, consent: bool = True, derm=None,
          body_site: str = "left forearm") -> tuple[Patient, Site]:
    patient = create_patient(clinic, name=f"Patient {phone[-4:]}", phone=phone, sms_consent=consent, timezone=tz)
    site = create_site(patient, body_site=body_site, diagnosis=diagnosis, stage=stage, excision_date=excision,
                       dermatologist=derm, today=excision)
    db.session.commit()
    return patient, site


def receive_photo(site: Site, at: datetime) -> Photo:
    """A photo arrives at ``at`` (what followup.photos.receive_photo stores), then the reminders hook runs."""
    photo = Photo(site_id=site.id, kind="followup", sha256="0" * 64, storage_key="x.jpg", content_type="image/jpeg",
                  size_bytes=1, width=1, height=1, received_at=at, status="queued", status_changed_at=at)
    db.session.add(photo)
    db.session.commit()
    reminders.on_photo_received(photo)
    return photo


def items(site: Site, kind: str) -> list[PlanItem]:
    return [i for i in db.session.execute(select(PlanItem).join(PlanItem.plan).where(
        PlanItem.kind == kind).order_by(PlanItem.due_date)).scalars() if i.plan.site_id == site.id]


def sent_bodies(fake: FakeTwilio, to: Optional[str] = None) -> list[str]:
    return [m.body for m in fake.messages if to is None or m.to == to]


def test_photo_cycle_heads_up_request_re_reminder_then_escalation(sms_app, fake_twilio, world):
    patient, site = enrol(world.clinic, "+447700900101")
    due = items(site, "photo")[0].due_date
    assert due == date(2027, 2, 4)
    # Nothing before its time (10:00 in London; GMT in February).
    assert reminders.dispatch(utc(2027, 2, 2, 9, 59))["sent"] == 0
    summary = reminders.dispatch(utc(2027, 2, 2, 10, 0))
    assert summary["sent"] == 1 and summary["failed"] == 0
    assert "Thursday 4 February" in fake_twilio.messages[-1].body
    assert reminders.dispatch(utc(2027, 2, 3, 10, 0))["sent"] == 0
    reminders.dispatch(utc(2027, 2, 4, 10, 0))
    request = fake_twilio.messages[-1].body
    assert "https://scarwatch.test/u/" in request and "North Clinic" in request and "STOP" in request
    assert "+441234567890" in request
    assert len(request) <= 320  # two SMS segments at most
    reminders.dispatch(utc(2027, 2, 7, 10, 0))
    again = fake_twilio.messages[-1].body
    assert "haven't had the photo" in again and "https://scarwatch.test/u/" in again and again != request
    summary = reminders.dispatch(utc(2027, 2, 11, 10, 0))
    assert summary["escalated"] == 1 and summary["sent"] == 0
    assert len(fake_twilio.messages) == 3
    alert = db.session.execute(select(Alert).where(Alert.site_id == site.id)).scalar_one()
    assert alert.kind == "no_photo" and alert.status == "open" and alert.priority == 3
    assert items(site, "photo")[0].status == "missed"
    # Every message went to the patient, each once, with the outbox agreeing.
    rows = db.session.execute(select(OutboundMessage)).scalars().all()
    assert {r.status for r in rows} == {"sent"} and len(rows) == 3
    assert {m.to for m in fake_twilio.messages} == {patient.phone}
    # Sweeping again changes nothing.
    assert reminders.dispatch(utc(2027, 2, 11, 10, 5)) == {"sent": 0, "escalated": 0, "failed": 0, "planned": 0}


def test_photo_received_cancels_what_is_pending(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900102")
    reminders.dispatch(utc(2027, 2, 2, 10))
    reminders.dispatch(utc(2027, 2, 4, 10))
    receive_photo(site, utc(2027, 2, 5, 18, 30))
    assert items(site, "photo")[0].status == "done"
    for day in (7, 11, 12):
        summary = reminders.dispatch(utc(2027, 2, day, 10))
        assert summary["sent"] == summary["escalated"] == 0
    assert len(fake_twilio.messages) == 2
    statuses = dict(db.session.execute(
        select(Reminder.kind, Reminder.status).where(Reminder.site_id == site.id,
                                                     Reminder.plan_item_id == items(site, "photo")[0].id)).all())
    assert statuses == {"photo_heads_up": "queued", "photo_due": "queued", "photo_again": "cancelled",
                        "photo_escalation": "cancelled"}


def test_an_early_photo_answers_the_request_and_a_missed_hook_is_caught_by_the_sweep(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900103")
    reminders.dispatch(utc(2027, 2, 2, 10))  # heads-up
    # The photo is stored without the hook running (e.g. another process): the sweep still notices it.
    db.session.add(Photo(site_id=site.id, kind="followup", sha256="1" * 64, storage_key="y.jpg",
                         content_type="image/jpeg", size_bytes=1, width=1, height=1,
                         received_at=utc(2027, 2, 3, 8), status="queued", status_changed_at=utc(2027, 2, 3, 8)))
    db.session.commit()
    assert reminders.dispatch(utc(2027, 2, 4, 10))["cancelled"] >= 1
    assert len(fake_twilio.messages) == 1
    assert items(site, "photo")[0].status == "done"


def test_quiet_hours_in_the_patients_timezone(sms_app, fake_twilio, world):
    tz = "America/New_York"
    # Enrolled in the evening (New York) with a photo due tomorrow: the heads-up waits for the morning.
    _, site = enrol(world.clinic, "+15005550106", tz=tz, excision=date(2027, 1, 5))
    first = items(site, "photo")[0].due_date  # 2027-02-05
    evening = local(tz, 2027, 2, 3, 21, 30)  # 02:30 UTC on the 4th: not quiet in London, quiet in New York
    summary = reminders.dispatch(evening)
    assert summary["sent"] == 0 and summary["deferred"] == 1
    heads_up = db.session.execute(select(Reminder).where(Reminder.kind == "photo_heads_up")).scalar_one()
    assert heads_up.due_at == local(tz, 2027, 2, 4, 9, 0)
    assert reminders.dispatch(local(tz, 2027, 2, 4, 8, 59))["sent"] == 0
    assert reminders.dispatch(local(tz, 2027, 2, 4, 9, 0))["sent"] == 1
    assert f"{first:%B}" in fake_twilio.messages[0].body


def test_never_more_than_one_reminder_a_day(sms_app, fake_twilio, world):
    patient, arm = enrol(world.clinic, "+447700900104", body_site="left arm")
    leg = create_site(patient, body_site="right leg", diagnosis="bcc", excision_date=EXCISION, today=EXCISION)
    db.session.commit()
    reminders.dispatch(utc(2027, 2, 4, 10))  # both sites' requests are due; heads-ups have expired
    assert len(fake_twilio.messages) == 1
    reminders.dispatch(utc(2027, 2, 4, 15))
    assert len(fake_twilio.messages) == 1
    reminders.dispatch(utc(2027, 2, 5, 10))
    assert len(fake_twilio.messages) == 2
    assert {"left arm" in fake_twilio.messages[0].body, "right leg" in fake_twilio.messages[1].body} == {True} or \
        {"right leg" in fake_twilio.messages[0].body, "left arm" in fake_twilio.messages[1].body} == {True}
    assert leg.id != arm.id


def test_visit_reminders_give_the_clinic_number_and_staff_see_visits_due(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900105", diagnosis="scc")
    visit = items(site, "visit")[0].due_date  # three months after excision
    assert visit == date(2027, 4, 4)
    reminders.dispatch(local("Europe/London", 2027, 3, 21, 10))  # 14 days before (BST from 28 March)
    two_weeks = fake_twilio.messages[-1].body
    assert "check-up is due on Sunday 4 April" in two_weeks and "+441234567890" in two_weeks
    reminders.dispatch(local("Europe/London", 2027, 4, 3, 10))
    assert "tomorrow" in fake_twilio.messages[-1].body
    due = reminders.visits_due(world.clinic.id, date(2027, 3, 25))
    assert [(v["due_date"], v["overdue"]) for v in due] == [(visit, False)]
    assert reminders.visits_due(world.clinic.id, date(2027, 4, 10))[0]["overdue"] is True
    assert reminders.visits_due(world.other_clinic.id, date(2027, 4, 10)) == []


def test_opt_out_and_no_consent_send_nothing_but_a_missed_photo_still_escalates(sms_app, fake_twilio, world):
    patient, site = enrol(world.clinic, "+447700900106")
    _, silent = enrol(world.clinic, "+447700900107", consent=False)
    reminders.dispatch(utc(2027, 2, 2, 10))
    assert [m.to for m in fake_twilio.messages] == [patient.phone]
    reminders.opt_out(patient.phone)
    for day in (4, 7, 11):
        reminders.dispatch(utc(2027, 2, day, 10))
    assert len(fake_twilio.messages) == 1
    alerts = db.session.execute(select(Alert).order_by(Alert.site_id)).scalars().all()
    assert [a.site_id for a in alerts] == [site.id, silent.id]
    assert any("does not receive SMS" in reason for reason in alerts[0].reasons)


def test_a_closed_site_gets_nothing(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900108")
    reminders.dispatch(utc(2027, 2, 2, 10))
    site.closed_at = utc(2027, 2, 3, 12)
    db.session.commit()
    reminders.cancel_for_site(site.id)
    for day in (4, 7, 11):
        summary = reminders.dispatch(utc(2027, 2, day, 10))
        assert summary["sent"] == summary["escalated"] == 0
    assert len(fake_twilio.messages) == 1


def test_too_late_reminders_expire_instead_of_arriving_out_of_date(sms_app, fake_twilio, world):
    enrol(world.clinic, "+447700900109")
    summary = reminders.dispatch(utc(2027, 2, 8, 10))  # the sweep was down for a week
    # The heads-up and the day's request are past their moment; the re-reminder is still in its window.
    assert summary["planned"] == 4 and summary.get("expired", 0) == 0  # expired when planned, not by the sweep
    expired = db.session.execute(select(Reminder.kind).where(Reminder.status == "expired")).scalars().all()
    assert sorted(expired) == ["photo_due", "photo_heads_up"]
    assert summary["sent"] == 1 and "haven't had the photo" in fake_twilio.messages[0].body
    reminders.dispatch(utc(2027, 2, 9, 10))
    assert len(fake_twilio.messages) == 1


def test_cli_dispatch_without_credentials_logs_and_marks_not_sent(app, runner, world):
    enrol(world.clinic, "+447700900110")
    result = runner.invoke(args=["reminders", "dispatch", "--now", "2027-02-02T10:00:00Z"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert {"sent", "escalated", "failed"} <= set(summary) and summary["not_sent"] == 1
    row = db.session.execute(select(OutboundMessage)).scalar_one()
    assert row.status == "not_sent" and row.twilio_sid is None
    bad = runner.invoke(args=["reminders", "dispatch", "--now", "yesterday"])
    assert bad.exit_code != 0 and "ISO-8601" in bad.output


def test_urgent_alert_texts_the_dermatologist_a_link_others_wait_for_the_digest(sms_app, fake_twilio, world):
    world.derm.phone = "+447700900999"
    patient, site = enrol(world.clinic, "+447700900111", derm=world.derm, body_site="nose")
    urgent = raise_alert(clinic_id=world.clinic.id, site_id=site.id, photo_id=None, kind="change", priority=1,
                         score=0.9, reasons=["new pigment"])
    reminders.notify_alert(urgent)
    reminders.notify_alert(urgent)  # raised twice (a job re-run): one SMS
    db.session.commit()
    routine = raise_alert(clinic_id=world.clinic.id, site_id=site.id, photo_id=None, kind="unreadable",
                          priority=3, score=0.1, reasons=["blurred"])
    assert reminders.notify_alert(routine) == []
    routine.created_at = utc(2027, 3, 1, 15)
    db.session.commit()
    reminders.dispatch(utc(2027, 3, 1, 16))
    assert [m.to for m in fake_twilio.messages] == [world.derm.phone]
    text = fake_twilio.messages[0].body
    assert f"/alerts/{urgent.id}" in text and patient.name not in text and "nose" not in text
    reminders.dispatch(utc(2027, 3, 2, 8, 59))
    assert len(fake_twilio.messages) == 1
    reminders.dispatch(utc(2027, 3, 2, 9, 0))
    reminders.dispatch(utc(2027, 3, 2, 12, 0))
    to_derm = sent_bodies(fake_twilio, world.derm.phone)
    assert len(to_derm) == 2
    digest = to_derm[1]
    assert "1 new alert to review" in digest and "https://scarwatch.test/queue" in digest
    assert patient.name not in digest


def test_a_rejected_photo_answers_nothing_and_an_ignored_retake_still_escalates(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900111")
    reminders.dispatch(utc(2027, 2, 2, 10))
    reminders.dispatch(utc(2027, 2, 4, 10))
    photo = receive_photo(site, utc(2027, 2, 5, 18, 30))
    assert items(site, "photo")[0].status == "done"
    photo.status = "rejected"  # what followup.processing does when the photo cannot be used …
    reminders.on_photo_rejected(photo)  # … and then this
    db.session.commit()
    assert items(site, "photo")[0].status == "pending"
    assert reminders.dispatch(utc(2027, 2, 7, 10))["sent"] == 1, "the re-reminder comes back"
    assert reminders.dispatch(utc(2027, 2, 11, 10))["escalated"] == 1


def test_moving_a_due_date_moves_the_reminders_not_yet_sent(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900112")
    reminders.dispatch(utc(2027, 1, 25, 10))  # plans the first photo request's reminders, sends nothing yet
    item = items(site, "photo")[0]
    item.due_date = date(2027, 2, 20)
    reminders.reschedule_item(item)
    db.session.commit()
    assert reminders.dispatch(utc(2027, 2, 2, 10))["sent"] == 0, "nothing on the old heads-up day"
    assert reminders.dispatch(utc(2027, 2, 11, 10))["escalated"] == 0, "no escalation on the old date"
    assert reminders.dispatch(utc(2027, 2, 18, 10))["sent"] == 1, "the heads-up on the new date"
