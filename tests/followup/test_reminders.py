"""The reminder sweep: what is sent when, what cancels it, quiet hours, one a day, escalation, alerts.

Time is moved by the sweep's ``now`` (the CLI's ``--now``); SMS go to the loopback Twilio (`FakeTwilio`)
through the real twilio client (helpers in tests/followup/helpers.py, fixtures in its conftest).
"""
from __future__ import annotations

import json
from datetime import date
from typing import Optional

from sqlalchemy import select

from followup import queries
from followup.db import db
from followup.models import Alert, OutboundMessage, Photo, Reminder
from followup.outreach import consent, reminders, sweep
from followup.records.patients import create_site
from followup.triage import notify
from followup.triage.alerts import raise_alert
from notifications.testing import FakeTwilio
from tests.followup.helpers import EXCISION, enrol, items, local, receive_photo, utc


def sent_bodies(fake: FakeTwilio, to: Optional[str] = None) -> list[str]:
    return [m.body for m in fake.messages if to is None or m.to == to]


def test_photo_cycle_heads_up_request_re_reminder_then_escalation(sms_app, fake_twilio, world):
    patient, site = enrol(world.clinic, "+447700900101")
    due = items(site, "photo")[0].due_date
    assert due == date(2027, 2, 4)
    # Nothing before its time (10:00 in London; GMT in February).
    assert sweep.dispatch(utc(2027, 2, 2, 9, 59))["sent"] == 0
    summary = sweep.dispatch(utc(2027, 2, 2, 10, 0))
    assert summary["sent"] == 1 and summary["failed"] == 0
    assert "Thursday 4 February" in fake_twilio.messages[-1].body
    assert sweep.dispatch(utc(2027, 2, 3, 10, 0))["sent"] == 0
    sweep.dispatch(utc(2027, 2, 4, 10, 0))
    request = fake_twilio.messages[-1].body
    assert "https://scarwatch.test/u/" in request and "North Clinic" in request and "STOP" in request
    assert "+441234567890" in request
    assert len(request) <= 320  # two SMS segments at most
    sweep.dispatch(utc(2027, 2, 7, 10, 0))
    again = fake_twilio.messages[-1].body
    assert "haven't had the photo" in again and "https://scarwatch.test/u/" in again and again != request
    summary = sweep.dispatch(utc(2027, 2, 11, 10, 0))
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
    assert sweep.dispatch(utc(2027, 2, 11, 10, 5)) == {"sent": 0, "escalated": 0, "failed": 0, "planned": 0}


def test_photo_received_cancels_what_is_pending(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900102")
    sweep.dispatch(utc(2027, 2, 2, 10))
    sweep.dispatch(utc(2027, 2, 4, 10))
    receive_photo(site, utc(2027, 2, 5, 18, 30))
    assert items(site, "photo")[0].status == "done"
    for day in (7, 11, 12):
        summary = sweep.dispatch(utc(2027, 2, day, 10))
        assert summary["sent"] == summary["escalated"] == 0
    assert len(fake_twilio.messages) == 2
    statuses = dict(db.session.execute(
        select(Reminder.kind, Reminder.status).where(Reminder.site_id == site.id,
                                                     Reminder.plan_item_id == items(site, "photo")[0].id)).all())
    assert statuses == {"photo_heads_up": "queued", "photo_due": "queued", "photo_again": "cancelled",
                        "photo_escalation": "cancelled"}


def test_an_early_photo_answers_the_request_and_a_missed_hook_is_caught_by_the_sweep(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900103")
    sweep.dispatch(utc(2027, 2, 2, 10))  # heads-up
    # The photo is stored without the hook running (e.g. another process): the sweep still notices it.
    db.session.add(Photo(site_id=site.id, kind="followup", sha256="1" * 64, storage_key="y.jpg",
                         content_type="image/jpeg", size_bytes=1, width=1, height=1,
                         received_at=utc(2027, 2, 3, 8), status="queued", status_changed_at=utc(2027, 2, 3, 8)))
    db.session.commit()
    assert sweep.dispatch(utc(2027, 2, 4, 10))["cancelled"] >= 1
    assert len(fake_twilio.messages) == 1
    assert items(site, "photo")[0].status == "done"


def test_quiet_hours_in_the_patients_timezone(sms_app, fake_twilio, world):
    tz = "America/New_York"
    # Enrolled in the evening (New York) with a photo due tomorrow: the heads-up waits for the morning.
    _, site = enrol(world.clinic, "+15005550106", tz=tz, excision=date(2027, 1, 5))
    first = items(site, "photo")[0].due_date  # 2027-02-05
    evening = local(tz, 2027, 2, 3, 21, 30)  # 02:30 UTC on the 4th: not quiet in London, quiet in New York
    summary = sweep.dispatch(evening)
    assert summary["sent"] == 0 and summary["deferred"] == 1
    heads_up = db.session.execute(select(Reminder).where(Reminder.kind == "photo_heads_up")).scalar_one()
    assert heads_up.due_at == local(tz, 2027, 2, 4, 9, 0)
    assert sweep.dispatch(local(tz, 2027, 2, 4, 8, 59))["sent"] == 0
    assert sweep.dispatch(local(tz, 2027, 2, 4, 9, 0))["sent"] == 1
    assert f"{first:%B}" in fake_twilio.messages[0].body


def test_never_more_than_one_reminder_a_day(sms_app, fake_twilio, world):
    patient, arm = enrol(world.clinic, "+447700900104", body_site="left arm")
    leg = create_site(patient, body_site="right leg", diagnosis="bcc", excision_date=EXCISION, today=EXCISION)
    db.session.commit()
    sweep.dispatch(utc(2027, 2, 4, 10))  # both sites' requests are due; heads-ups have expired
    assert len(fake_twilio.messages) == 1
    sweep.dispatch(utc(2027, 2, 4, 15))
    assert len(fake_twilio.messages) == 1
    sweep.dispatch(utc(2027, 2, 5, 10))
    assert len(fake_twilio.messages) == 2
    assert {"left arm" in fake_twilio.messages[0].body, "right leg" in fake_twilio.messages[1].body} == {True} or \
        {"right leg" in fake_twilio.messages[0].body, "left arm" in fake_twilio.messages[1].body} == {True}
    texted = db.session.execute(select(Reminder.site_id).where(Reminder.kind == "photo_due",
                                                               Reminder.outbound_message_id.is_not(None))).scalars()
    assert sorted(texted) == sorted([arm.id, leg.id]), "each site's request, on its own day"


def test_visit_reminders_give_the_clinic_number_and_staff_see_visits_due(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900105", diagnosis="scc")
    visit = items(site, "visit")[0].due_date  # three months after excision
    assert visit == date(2027, 4, 4)
    sweep.dispatch(local("Europe/London", 2027, 3, 21, 10))  # 14 days before (BST from 28 March)
    two_weeks = fake_twilio.messages[-1].body
    assert "check-up is due on Sunday 4 April" in two_weeks and "+441234567890" in two_weeks
    sweep.dispatch(local("Europe/London", 2027, 4, 3, 10))
    assert "tomorrow" in fake_twilio.messages[-1].body
    due = queries.visits_due(world.clinic.id, date(2027, 3, 25))
    assert [(v["due_date"], v["overdue"]) for v in due] == [(visit, False)]
    assert queries.visits_due(world.clinic.id, date(2027, 4, 10))[0]["overdue"] is True
    assert queries.visits_due(world.other_clinic.id, date(2027, 4, 10)) == []


def test_opt_out_and_no_consent_send_nothing_but_a_missed_photo_still_escalates(sms_app, fake_twilio, world):
    patient, site = enrol(world.clinic, "+447700900106")
    _, silent = enrol(world.clinic, "+447700900107", consent=False)
    sweep.dispatch(utc(2027, 2, 2, 10))
    assert [m.to for m in fake_twilio.messages] == [patient.phone]
    consent.opt_out(patient.phone)
    for day in (4, 7, 11):
        sweep.dispatch(utc(2027, 2, day, 10))
    assert len(fake_twilio.messages) == 1
    alerts = db.session.execute(select(Alert).order_by(Alert.site_id)).scalars().all()
    assert [a.site_id for a in alerts] == [site.id, silent.id]
    assert any("does not receive SMS" in reason for reason in alerts[0].reasons)


def test_a_closed_site_gets_nothing(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900108")
    sweep.dispatch(utc(2027, 2, 2, 10))
    site.closed_at = utc(2027, 2, 3, 12)
    db.session.commit()
    reminders.cancel_for_site(site.id)
    for day in (4, 7, 11):
        summary = sweep.dispatch(utc(2027, 2, day, 10))
        assert summary["sent"] == summary["escalated"] == 0
    assert len(fake_twilio.messages) == 1


def test_too_late_reminders_expire_instead_of_arriving_out_of_date(sms_app, fake_twilio, world):
    enrol(world.clinic, "+447700900109")
    summary = sweep.dispatch(utc(2027, 2, 8, 10))  # the sweep was down for a week
    # The heads-up and the day's request are past their moment; the re-reminder is still in its window.
    assert summary["planned"] == 4 and summary.get("expired", 0) == 0  # expired when planned, not by the sweep
    expired = db.session.execute(select(Reminder.kind).where(Reminder.status == "expired")).scalars().all()
    assert sorted(expired) == ["photo_due", "photo_heads_up"]
    assert summary["sent"] == 1 and "haven't had the photo" in fake_twilio.messages[0].body
    sweep.dispatch(utc(2027, 2, 9, 10))
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
    notify.notify_alert(urgent)
    notify.notify_alert(urgent)  # raised twice (a job re-run): one SMS
    db.session.commit()
    routine = raise_alert(clinic_id=world.clinic.id, site_id=site.id, photo_id=None, kind="unreadable",
                          priority=3, score=0.1, reasons=["blurred"])
    assert notify.notify_alert(routine) == []
    routine.created_at = utc(2027, 3, 1, 15)
    db.session.commit()
    sweep.dispatch(utc(2027, 3, 1, 16))
    assert [m.to for m in fake_twilio.messages] == [world.derm.phone]
    text = fake_twilio.messages[0].body
    assert f"/alerts/{urgent.id}" in text and patient.name not in text and "nose" not in text
    sweep.dispatch(utc(2027, 3, 2, 8, 59))
    assert len(fake_twilio.messages) == 1
    sweep.dispatch(utc(2027, 3, 2, 9, 0))
    sweep.dispatch(utc(2027, 3, 2, 12, 0))
    to_derm = sent_bodies(fake_twilio, world.derm.phone)
    assert len(to_derm) == 2
    digest = to_derm[1]
    assert "1 new alert to review" in digest and "https://scarwatch.test/queue" in digest
    assert patient.name not in digest


def test_a_rejected_photo_answers_nothing_and_an_ignored_retake_still_escalates(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900111")
    sweep.dispatch(utc(2027, 2, 2, 10))
    sweep.dispatch(utc(2027, 2, 4, 10))
    photo = receive_photo(site, utc(2027, 2, 5, 18, 30))
    assert items(site, "photo")[0].status == "done"
    photo.status = "rejected"  # what followup.analysis.processing does when the photo cannot be used …
    reminders.on_photo_rejected(photo)  # … and then this
    db.session.commit()
    assert items(site, "photo")[0].status == "pending"
    assert sweep.dispatch(utc(2027, 2, 7, 10))["sent"] == 1, "the re-reminder comes back"
    assert sweep.dispatch(utc(2027, 2, 11, 10))["escalated"] == 1


def test_moving_a_due_date_moves_the_reminders_not_yet_sent(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900112")
    sweep.dispatch(utc(2027, 1, 25, 10))  # plans the first photo request's reminders, sends nothing yet
    item = items(site, "photo")[0]
    item.due_date = date(2027, 2, 20)
    reminders.reschedule_item(item)
    db.session.commit()
    assert sweep.dispatch(utc(2027, 2, 2, 10))["sent"] == 0, "nothing on the old heads-up day"
    assert sweep.dispatch(utc(2027, 2, 11, 10))["escalated"] == 0, "no escalation on the old date"
    assert sweep.dispatch(utc(2027, 2, 18, 10))["sent"] == 1, "the heads-up on the new date"
