"""Clinical reliability (issue 18, items 3 and 4): one unresolved alert per site, photo and kind, enforced by
the database; a bad row never stops a reminder sweep; a re-dated plan item is reminded and escalated again;
retake texts keep quiet hours and the one-a-day rule, survive a double request, and are not sent for a photo
staff uploaded."""
from __future__ import annotations

import json
import re
from datetime import date

import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from followup.db import db
from followup.intake.photos import receive_photo
from followup.models import Alert, OutboundMessage, Photo, Reminder, Site
from followup.outreach import due, reminders, rules, sweep, texts
from followup.records import links
from followup.triage import alerts, notify
from tests.followup.helpers import enrol, items, local, utc
from tests.helpers import jpeg, skin_photo


def link_token(body: str) -> str:
    """The token of the upload link in a stored text (stored sealed; opened as it is sent)."""
    return re.search(r"/u/(\S+)", links.open_links(body)).group(1)


# --- item 3: alerts and the sweep --------------------------------------------------------------------------------

def test_the_database_keeps_one_unresolved_alert_per_site_photo_and_kind(app, world, site_id):
    photo = Photo(site_id=site_id, kind="followup", sha256="0" * 64, storage_key="p.jpg", content_type="image/jpeg",
                  size_bytes=1, width=1, height=1, status="done")
    db.session.add(photo)
    db.session.commit()

    def add(**fields) -> None:
        values = dict(clinic_id=world.clinic.id, site_id=site_id, priority=3, recurrence_score=0.0, reasons=[])
        db.session.add(Alert(**{**values, **fields}))
        db.session.commit()

    add(kind="no_photo")
    add(kind="change", photo_id=photo.id, status="claimed", claimed_by_id=world.derm.id)
    for duplicate in (dict(kind="no_photo"), dict(kind="change", photo_id=photo.id)):
        with pytest.raises(IntegrityError):
            add(**duplicate)
        db.session.rollback()
    add(kind="change")  # another kind, or another photo, is another alert
    add(kind="no_photo", status="resolved")  # resolved ones are history: any number of them
    add(kind="no_photo", status="resolved")
    assert len(db.session.execute(select(Alert).where(Alert.status != "resolved")).scalars().all()) == 3


def test_raise_alert_that_loses_a_race_updates_the_alert_that_won(app, world, site_id, monkeypatch):
    first = alerts.raise_alert(clinic_id=world.clinic.id, site_id=site_id, photo_id=None, kind="no_photo",
                               priority=3, score=0.0, reasons=["first sweep"])
    db.session.commit()
    lookups = []

    def looked_too_early(*args):
        lookups.append(args)
        return None if len(lookups) == 1 else original(*args)  # the other sweep's insert lands after our look

    original = alerts.open_alert
    monkeypatch.setattr(alerts, "open_alert", looked_too_early)
    second = alerts.raise_alert(clinic_id=world.clinic.id, site_id=site_id, photo_id=None, kind="no_photo",
                                priority=2, score=0.0, reasons=["second sweep"])
    db.session.commit()  # the caller's transaction survived the refused insert
    assert second.id == first.id and len(lookups) == 2
    [alert] = db.session.execute(select(Alert)).scalars()
    assert (alert.priority, alert.reasons) == (2, ["second sweep"])


@pytest.fixture
def without_the_open_alert_index(app):
    """A database from before migration 0004, which could hold duplicate open alerts."""
    index = next((i for i in Alert.__table__.indexes if i.name == "uq_alert_open_site"), None)
    db.session.execute(text("DROP INDEX IF EXISTS uq_alert_open_site"))
    db.session.commit()
    yield
    db.session.rollback()
    db.session.execute(text("UPDATE alert SET status = 'resolved'"))  # the duplicates would refuse it
    db.session.commit()
    if index is not None:
        index.create(db.engine)  # PostgreSQL keeps one schema for the whole session


def test_a_duplicate_open_alert_no_longer_stops_every_sms_of_the_sweep(sms_app, fake_twilio, world,
                                                                        without_the_open_alert_index):
    _, missed = enrol(world.clinic, "+447700900201")
    for _ in range(2):
        db.session.add(Alert(clinic_id=world.clinic.id, site_id=missed.id, kind="no_photo", priority=3,
                             recurrence_score=0.0, reasons=["an older sweep"]))
    db.session.commit()
    sweep.dispatch(utc(2027, 2, 2, 10))
    sweep.dispatch(utc(2027, 2, 4, 10))
    sweep.dispatch(utc(2027, 2, 7, 10))
    assert len(fake_twilio.messages) == 3
    patient, on_time = enrol(world.clinic, "+447700900202", excision=date(2027, 1, 13))  # heads-up due 11 Feb
    summary = sweep.dispatch(utc(2027, 2, 11, 10))
    assert summary["escalated"] == 1 and summary["sent"] == 1 and not summary.get("errors")
    assert fake_twilio.messages[-1].to == patient.phone
    oldest = min(db.session.execute(select(Alert.id).where(Alert.site_id == missed.id)).scalars())
    escalation = db.session.execute(select(Reminder).where(Reminder.kind == "photo_escalation",
                                                           Reminder.site_id == missed.id)).scalar_one()
    assert escalation.alert_id == oldest


def test_one_reminder_that_raises_is_logged_counted_and_the_rest_are_sent(sms_app, fake_twilio, world, runner,
                                                                          monkeypatch, caplog):
    _, broken = enrol(world.clinic, "+447700900203")
    patients = [enrol(world.clinic, f"+44770090021{n}", excision=date(2027, 1, 13))[0] for n in range(3)]
    for day in (2, 4, 7):
        sweep.dispatch(utc(2027, 2, day, 10))
    escalate = due._escalate

    def escalate_or_fail(reminder, item, site, patient, now):
        if site.id == broken.id:
            raise RuntimeError("a bad row")
        return escalate(reminder, item, site, patient, now)

    monkeypatch.setattr(due, "_escalate", escalate_or_fail)
    result = runner.invoke(args=["reminders", "dispatch", "--now", "2027-02-11T10:00:00Z"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert {"sent", "escalated", "failed"} <= set(summary)
    assert summary["sent"] == 3 and summary["errors"] == 1 and summary["escalated"] == 0
    assert {m.to for m in fake_twilio.messages[-3:]} == {p.phone for p in patients}
    assert "a bad row" in caplog.text
    db.session.expire_all()
    row = db.session.execute(select(Reminder).where(Reminder.kind == "photo_escalation",
                                                    Reminder.site_id == broken.id)).scalar_one()
    assert row.status == "pending" and row.detail.startswith("error") and row.due_at == utc(2027, 2, 11, 11)
    monkeypatch.setattr(due, "_escalate", escalate)  # fixed: the next sweep after the wait escalates it
    assert sweep.dispatch(utc(2027, 2, 11, 10, 30))["escalated"] == 0
    assert sweep.dispatch(utc(2027, 2, 11, 11))["escalated"] == 1


def test_a_failing_digest_costs_only_its_dermatologist_their_text(sms_app, fake_twilio, world, monkeypatch):
    from followup.records.accounts import create_user

    world.derm.phone = "+447700900998"
    other = create_user(world.clinic, email="derm2@north.test", password="x" * 12, role="dermatologist")
    other.phone = "+447700900997"
    db.session.commit()
    for derm, phone in ((world.derm, "+447700900221"), (other, "+447700900222")):
        _, site = enrol(world.clinic, phone, derm=derm)
        alert = alerts.raise_alert(clinic_id=world.clinic.id, site_id=site.id, photo_id=None, kind="unreadable",
                                   priority=3, score=0.1, reasons=["blurred"])
        alert.created_at = utc(2027, 3, 1, 15)
    db.session.commit()
    render = texts.render_sms

    def render_or_fail(name, **context):
        if name == "alert_digest" and not hasattr(render_or_fail, "failed"):
            render_or_fail.failed = True
            raise ValueError("a broken template")
        return render(name, **context)

    monkeypatch.setattr(notify, "render_sms", render_or_fail)
    summary = sweep.dispatch(utc(2027, 3, 2, 9, 0))
    assert summary["digests"] == 1 and summary["errors"] == 1 and summary["sent"] == 1


def test_a_pre_send_check_that_raises_holds_back_only_its_own_text(sms_app, fake_twilio, world, monkeypatch):
    bad, _ = enrol(world.clinic, "+447700900241")
    good, _ = enrol(world.clinic, "+447700900242")
    guard = rules.reminder_guard

    def guard_or_fail(rows, now):
        if any(row.to == bad.phone for row in rows):
            raise RuntimeError("a bad row")
        return guard(rows, now)

    monkeypatch.setattr(sweep, "reminder_guard", guard_or_fail)
    summary = sweep.dispatch(utc(2027, 2, 2, 10))
    assert summary["sent"] == 1 and summary["errors"] == 1
    assert [m.to for m in fake_twilio.messages] == [good.phone]
    held = db.session.execute(select(OutboundMessage).where(OutboundMessage.to == bad.phone)).scalar_one()
    assert held.status == "pending" and held.next_attempt_at == utc(2027, 2, 2, 10, 15)
    monkeypatch.setattr(sweep, "reminder_guard", guard)
    assert sweep.dispatch(utc(2027, 2, 2, 10, 15))["sent"] == 1


# --- item 4: re-dated items, retake texts ------------------------------------------------------------------------

def test_a_re_dated_item_is_reminded_and_escalated_again(sms_app, fake_twilio, world, client):
    from tests.followup.helpers import login

    patient, site = enrol(world.clinic, "+447700900231")
    for day in (2, 4, 7, 11):
        sweep.dispatch(utc(2027, 2, day, 10))
    item = items(site, "photo")[0]
    assert item.status == "missed" and len(fake_twilio.messages) == 3
    # The clinic agrees a new date with the patient (the page's plan form; the state is left as it is).
    login(client)
    response = client.post(f"/sites/{site.id}/plan", data={f"due-{item.id}": "2027-02-24",
                                                           f"status-{item.id}": "missed"})
    assert response.status_code == 303
    db.session.expire_all()
    assert items(site, "photo")[0].status == "pending"
    assert sweep.dispatch(utc(2027, 2, 22, 10))["sent"] == 1, "the heads-up for the new date"
    assert "Wednesday 24 February" in fake_twilio.messages[-1].body
    sweep.dispatch(utc(2027, 2, 24, 10))
    assert "/u/" in fake_twilio.messages[-1].body
    sweep.dispatch(utc(2027, 2, 27, 10))
    assert "haven't had the photo" in fake_twilio.messages[-1].body
    assert len(fake_twilio.messages) == 6 and {m.to for m in fake_twilio.messages} == {patient.phone}
    assert sweep.dispatch(utc(2027, 3, 3, 10))["escalated"] == 1, "and escalated again"
    [alert] = db.session.execute(select(Alert).where(Alert.site_id == site.id)).scalars()
    assert alert.kind == "no_photo" and "2027-02-24" in alert.reasons[0]
    keys = db.session.execute(select(OutboundMessage.idempotency_key).where(
        OutboundMessage.idempotency_key.like("reminder:%")).order_by(OutboundMessage.id)).scalars().all()
    assert len(set(keys)) == len(keys) and sum(bool(re.fullmatch(r"reminder:\d+:1", k)) for k in keys) == 3


def test_re_dating_withdraws_a_queued_text_that_names_the_old_date(sms_app, fake_twilio, world):
    _, site = enrol(world.clinic, "+447700900232")
    reminders.plan_reminders(utc(2027, 2, 2, 10))
    due.process_due(utc(2027, 2, 2, 10))  # the heads-up is queued; the sweep has not sent it yet
    item = items(site, "photo")[0]
    item.due_date = date(2027, 2, 20)
    reminders.reschedule_item(item)
    db.session.commit()
    assert db.session.execute(select(OutboundMessage.status)).scalar_one() == "cancelled"
    assert sweep.dispatch(utc(2027, 2, 2, 10, 5))["sent"] == 0
    sweep.dispatch(utc(2027, 2, 18, 10))
    assert [m.body for m in fake_twilio.messages if "Saturday 20 February" in m.body]


def test_a_retake_text_waits_for_the_next_day_after_a_reminder(sms_app, fake_twilio, world):
    patient, site = enrol(world.clinic, "+447700900233")
    sweep.dispatch(utc(2027, 2, 4, 10))  # the photo request
    assert len(fake_twilio.messages) == 1
    texts.request_retake(site, ["it was blurred"], key="retake:photo:test")
    db.session.commit()
    assert sweep.dispatch(utc(2027, 2, 4, 10, 30))["sent"] == 0, "one text a day"
    retake = db.session.execute(select(OutboundMessage).where(OutboundMessage.purpose == "retake")).scalar_one()
    assert retake.status == "pending" and retake.next_attempt_at == utc(2027, 2, 5, 10)
    assert sweep.dispatch(utc(2027, 2, 5, 10))["sent"] == 1
    assert "blurred" in fake_twilio.messages[-1].body and fake_twilio.messages[-1].to == patient.phone


def test_a_retake_text_waits_for_the_end_of_quiet_hours_in_the_patients_timezone(sms_app, fake_twilio, world):
    tz = "America/New_York"
    _, site = enrol(world.clinic, "+15005550233", tz=tz)
    texts.request_retake(site, ["it was dark"], key="retake:photo:night")
    db.session.commit()
    assert sweep.dispatch(local(tz, 2027, 1, 20, 21, 30))["sent"] == 0, "quiet hours"
    retake = db.session.execute(select(OutboundMessage)).scalar_one()
    assert retake.next_attempt_at == local(tz, 2027, 1, 21, 9, 0)
    assert sweep.dispatch(local(tz, 2027, 1, 21, 9, 0))["sent"] == 1
    # It took the day: that day's reminder would wait for the next (one text a day, whoever asks first).
    texts.request_retake(site, ["again"], key="retake:photo:second")
    db.session.commit()
    assert sweep.dispatch(local(tz, 2027, 1, 21, 12, 0))["sent"] == 0


def test_a_double_retake_request_keeps_the_link_the_patient_was_sent(app, world, site_id):
    site = db.session.get(Site, site_id)
    first = texts.request_retake(site, ["blurred"], key="retake:alert:7")
    db.session.commit()
    token = link_token(first.body)
    assert links.resolve_link(token)
    assert texts.request_retake(site, ["blurred"], key="retake:alert:7") is None  # the double submit
    db.session.commit()
    assert links.resolve_link(token), "the link in the text still opens"
    assert db.session.execute(select(OutboundMessage)).scalar_one().id == first.id


def test_a_double_retake_request_for_a_patient_without_texts_changes_nothing_either(app, world, site_id):
    site = db.session.get(Site, site_id)
    site.patient.sms_consent = False
    first = texts.request_retake(site, ["blurred"], key="retake:alert:8")
    db.session.commit()
    assert first.status == "not_sent" and "call them" in first.error_message
    assert texts.request_retake(site, ["blurred"], key="retake:alert:8") is None
    db.session.commit()
    assert links.resolve_link(link_token(first.body))


@pytest.fixture(scope="module")
def scene():
    return skin_photo(21)


def test_a_rejected_photo_uploaded_by_staff_does_not_text_the_patient(app, world, site_id, scene):
    site = db.session.get(Site, site_id)
    image, _ = scene
    receive_photo(site, jpeg(image), kind="baseline", user=world.derm)
    other, _ = skin_photo(999)
    staff = receive_photo(site, jpeg((other * 0.05).astype(np.uint8)), kind="followup", user=world.derm)
    db.session.refresh(staff)
    assert staff.status == "rejected" and staff.status_detail
    assert db.session.execute(select(OutboundMessage)).first() is None, "the patient never sent that photo"
    token, _ = links.create_link(site)
    db.session.commit()
    patients = receive_photo(site, jpeg((other * 0.05).astype(np.uint8) + 2), kind="followup",
                             link=links.resolve_link(token))
    db.session.refresh(patients)
    assert patients.status == "rejected"
    [retake] = db.session.execute(select(OutboundMessage)).scalars()
    assert retake.purpose == "retake" and retake.idempotency_key == f"retake:photo:{patients.id}"
