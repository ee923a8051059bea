"""Reminders through the real twilio client against the loopback Twilio: outages and faults, a simulated year,
and two sweeps at the same instant. Every message must reach the patient exactly once."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from followup import queries
from followup.db import db
from followup.models import Alert, OutboundMessage, PlanItem, Reminder
from followup.outreach import consent, outbox, sweep
from followup.records import links
from tests.conftest import PASSWORD
from tests.followup.helpers import enrol, items, local, make_sender, receive_photo, utc

REPO = Path(__file__).resolve().parents[2]


def heal(fake) -> None:
    """Twilio is back: drop the faults still queued."""
    with fake._state.lock:
        fake._state.faults.clear()


def assert_once_each(fake) -> None:
    bodies = Counter((m.to, m.body) for m in fake.messages)
    assert all(count == 1 for count in bodies.values()), [b for b, c in bodies.items() if c > 1]


def test_twilio_down_for_an_hour_then_every_due_reminder_exactly_once(sms_app, fake_twilio, world):
    phones = [f"+4477009002{n:02d}" for n in range(6)]
    for phone in phones:
        enrol(world.clinic, phone)
    fake_twilio.fail_next(100_000, status=503)
    start = utc(2027, 2, 2, 10)
    for minute in range(60):
        summary = sweep.dispatch(start + timedelta(minutes=minute))
        assert summary["sent"] == 0 and summary["failed"] == 0
    assert fake_twilio.messages == []
    # One probe per sweep while down, not a storm: the sweep stops at the first message Twilio refuses.
    assert len(fake_twilio.requests) <= 2 * 60
    heal(fake_twilio)
    sent = 0
    for minute in range(60, 80):
        sent += sweep.dispatch(start + timedelta(minutes=minute))["sent"]
    assert sent == 6
    assert sorted(m.to for m in fake_twilio.messages) == phones
    assert_once_each(fake_twilio)
    rows = db.session.execute(select(OutboundMessage)).scalars().all()
    assert {r.status for r in rows} == {"sent"} and all(r.twilio_sid for r in rows)


def test_429_reset_and_a_slow_answer_each_still_one_message(sms_app, fake_twilio, world):
    sms_app.extensions["sms_sender"] = make_sender(fake_twilio, timeout_seconds=0.3)
    phones = [f"+4477009003{n:02d}" for n in range(4)]
    for phone in phones:
        enrol(world.clinic, phone)
    fake_twilio.fail_next(1, status=429, retry_after=0)
    fake_twilio.reset_next(1, method="POST")
    fake_twilio.slow_next(1, delay_seconds=0.8, method="POST")  # created, but the answer comes too late
    summary = sweep.dispatch(utc(2027, 2, 2, 10))
    summary2 = sweep.dispatch(utc(2027, 2, 2, 10, 5))
    assert summary["sent"] + summary2["sent"] == 4
    assert sorted(m.to for m in fake_twilio.messages) == phones
    assert_once_each(fake_twilio)


def test_an_unknown_outcome_is_looked_up_never_resent(sms_app, fake_twilio, world):
    sms_app.extensions["sms_sender"] = make_sender(fake_twilio, timeout_seconds=0.3)
    patient, _ = enrol(world.clinic, "+447700900401")
    fake_twilio.slow_next(1, delay_seconds=0.8, method="POST")
    fake_twilio.fail_next(5, status=503, method="GET")  # and the lookup cannot tell either
    summary = sweep.dispatch(utc(2027, 2, 2, 10))
    assert summary["unknown"] == 1 and summary["sent"] == 0
    row = db.session.execute(select(OutboundMessage)).scalar_one()
    assert row.status == "unknown" and row.attempted_at is not None
    heal(fake_twilio)
    summary = sweep.dispatch(utc(2027, 2, 2, 10, 1))
    assert summary["reconciled_sent"] == 1
    db.session.refresh(row)
    assert row.status == "sent" and row.twilio_sid == fake_twilio.messages[0].sid
    assert [m.to for m in fake_twilio.messages] == [patient.phone]


def test_a_row_left_sending_by_a_dead_process_is_reconciled(sms_app, fake_twilio, world):
    enrol(world.clinic, "+447700900402")
    sweep.dispatch(utc(2027, 2, 2, 10))
    row = db.session.execute(select(OutboundMessage)).scalar_one()
    # As if the process died after Twilio took the message but before the result was stored.
    row.status, row.twilio_sid, row.attempted_at = "sending", None, row.attempted_at - timedelta(minutes=30)
    db.session.commit()
    summary = sweep.dispatch(utc(2027, 2, 2, 10, 15))
    assert summary["reconciled_sent"] == 1 and len(fake_twilio.messages) == 1
    db.session.refresh(row)
    assert row.status == "sent" and row.twilio_sid == fake_twilio.messages[0].sid


#: An upload link with its token; a link shown without its token ends in "/u/…".
LIVE_LINK = re.compile(r"https://scarwatch\.test/u/([A-Za-z0-9_.\-]+)")


def test_the_outbox_keeps_upload_links_sealed_and_every_attempt_sends_the_same_working_link(
        sms_app, fake_twilio, world, client):
    patient, site = enrol(world.clinic, "+447700900404")
    fake_twilio.fail_next(2, status=503, method="POST")  # both tries of the first attempt: retried later
    assert sweep.dispatch(utc(2027, 2, 4, 10))["retrying"] == 1  # the photo request, with a new link
    sms_app.extensions["sms_sender"] = make_sender(fake_twilio, timeout_seconds=0.3)
    fake_twilio.slow_next(1, delay_seconds=0.8, method="POST")  # the next attempt's outcome is unknown…
    fake_twilio.fail_next(5, status=503, method="GET")  # …and the sender's own lookup cannot tell either
    assert sweep.dispatch(utc(2027, 2, 4, 10, 5))["unknown"] == 1
    heal(fake_twilio)
    assert sweep.dispatch(utc(2027, 2, 4, 10, 6))["reconciled_sent"] == 1  # found at Twilio by its text
    tried = [r.params["Body"] for r in fake_twilio.requests if r.method == "POST"]
    assert len(tried) == 3 and len(set(tried)) == 1 and [m.body for m in fake_twilio.messages] == tried[:1]
    token = LIVE_LINK.search(tried[0]).group(1)
    assert client.get(f"/u/{token}").status_code == 200
    row = db.session.execute(select(OutboundMessage)).scalar_one()
    assert row.status == "sent" and token not in row.body and not LIVE_LINK.search(row.body)
    client.post("/login", data={"email": "derm@north.test", "password": PASSWORD})
    for page in ("/messages", f"/patients/{patient.id}"):
        text = client.get(page).get_data(as_text=True)
        assert "https://scarwatch.test/u/…" in text and token not in text and "upload-link:" not in text


def test_a_text_sent_without_credentials_logs_its_upload_link_hidden(app, world, caplog):
    enrol(world.clinic, "+447700900405")
    with caplog.at_level(logging.INFO):
        assert sweep.dispatch(utc(2027, 2, 4, 10))["not_sent"] == 1
    assert "scar (left forearm). Your personal link: https://scarwatch.test/u/… " in caplog.text
    assert not LIVE_LINK.search(caplog.text)
    row = db.session.execute(select(OutboundMessage)).scalar_one()
    assert not LIVE_LINK.search(row.body)


def test_twilio_error_21610_marks_the_patient_opted_out(sms_app, fake_twilio, world):
    patient, _ = enrol(world.clinic, "+447700900403")
    fake_twilio.opt_out(patient.phone)
    summary = sweep.dispatch(utc(2027, 2, 2, 10))
    assert summary["failed"] == 1
    db.session.refresh(patient)
    assert patient.opted_out_at is not None
    row = db.session.execute(select(OutboundMessage)).scalar_one()
    assert row.status == "failed" and row.error_code == "21610"
    assert row in queries.failed_messages(world.clinic.id)
    sweep.dispatch(utc(2027, 2, 4, 10))
    assert db.session.execute(select(func.count(OutboundMessage.id))).scalar_one() == 1


# --- a simulated year ------------------------------------------------------------------------------------------

PEOPLE = {
    # phone: (diagnosis, stage, timezone, photo behaviour)
    "+447700900501": ("melanoma", "IIA", "Europe/London", "on_time"),
    "+15005550502": ("melanoma", "IA", "America/New_York", "never"),
    "+447700900503": ("bcc", None, "Europe/London", "late"),
    "+447700900504": ("scc", None, "Europe/London", "never"),  # and texts STOP in May
    "+447700900505": ("other", None, "Europe/London", "on_time"),
}
STOPS = {"+447700900504": utc(2027, 5, 15, 12)}
START, END = utc(2027, 1, 4, 12), utc(2028, 1, 4, 12)


def test_a_simulated_year_sends_exactly_what_the_protocol_prescribes(sms_app, fake_twilio, world):
    sites, zones = {}, {}
    for phone, (diagnosis, stage, tz, _) in PEOPLE.items():
        _, sites[phone] = enrol(world.clinic, phone, diagnosis=diagnosis, stage=stage, tz=tz,
                                excision=START.date())
        zones[phone] = ZoneInfo(tz)
    photo_events = []  # (when, phone)
    for phone, (_, _, tz, behaviour) in PEOPLE.items():
        for item in items(sites[phone], "photo"):
            if behaviour == "on_time":
                photo_events.append((local(tz, *item.due_date.timetuple()[:3], 18, 0), phone))
            elif behaviour == "late":
                late = item.due_date + timedelta(days=4)
                photo_events.append((local(tz, late.year, late.month, late.day, 18, 0), phone))
    events = sorted(photo_events + [(when, phone) for phone, when in STOPS.items()])

    sent_at: dict[str, datetime] = {}  # body -> sweep time
    escalated = 0
    now = START
    while now < END:
        while events and events[0][0] <= now:
            when, phone = events.pop(0)
            if STOPS.get(phone) == when:
                consent.opt_out(phone, source="STOP")
            else:
                receive_photo(sites[phone], when)
        before = len(fake_twilio.messages)
        summary = sweep.dispatch(now)
        escalated += summary["escalated"]
        assert summary["failed"] == 0
        for message in fake_twilio.messages[before:]:
            sent_at[message.body] = now
        next_due = db.session.execute(
            select(func.min(Reminder.due_at)).where(Reminder.status == "pending", Reminder.due_at > now)
        ).scalar_one()
        candidates = [now + timedelta(days=7)] + ([next_due] if next_due else []) + (
            [events[0][0]] if events else [])
        now = min(candidates)

    assert_once_each(fake_twilio)
    # What arrived, read back as (phone, kind, due date) through the outbox.
    rows = {links.open_links(r.body): r for r in db.session.execute(select(OutboundMessage)).scalars()}
    got = Counter()
    per_day = Counter()
    for message in fake_twilio.messages:
        row = rows[message.body]
        reminder = db.session.execute(select(Reminder).where(Reminder.outbound_message_id == row.id)).scalar_one()
        item = db.session.get(PlanItem, reminder.plan_item_id)
        got[(message.to, reminder.kind, item.due_date)] += 1
        moment = sent_at[message.body].astimezone(zones[message.to])
        assert 9 <= moment.hour < 20, f"{reminder.kind} to {message.to} at {moment} (quiet hours)"
        per_day[(message.to, moment.date())] += 1
        if message.to in STOPS:
            assert sent_at[message.body] < STOPS[message.to], "a message after STOP"
    assert max(per_day.values()) == 1

    expected = Counter()
    expected_escalations = 0
    last_due = (END - timedelta(days=8)).date()
    for phone, (_, _, tz, behaviour) in PEOPLE.items():
        def ok(day: date, phone=phone, tz=tz) -> bool:
            when = local(tz, day.year, day.month, day.day, 10, 0)
            return START <= when < END and (phone not in STOPS or when < STOPS[phone])

        for item in items(sites[phone], "photo"):
            due = item.due_date
            if due > last_due:
                continue
            kinds = [("photo_heads_up", due - timedelta(days=2)), ("photo_due", due)]
            if behaviour != "on_time":
                kinds.append(("photo_again", due + timedelta(days=3)))
            if behaviour == "never":
                expected_escalations += 1
            expected.update((phone, kind, due) for kind, day in kinds if ok(day))
        for item in items(sites[phone], "visit"):
            due = item.due_date
            expected.update((phone, kind, due) for kind, day in (("visit_two_weeks", due - timedelta(days=14)),
                                                                 ("visit_day_before", due - timedelta(days=1)))
                            if ok(day) and due <= END.date())
    got_in_window = Counter({k: v for k, v in got.items() if k[2] <= last_due or k[1].startswith("visit")})
    assert got_in_window == expected
    assert escalated == expected_escalations > 0
    assert db.session.execute(select(func.count(Alert.id)).where(Alert.kind == "no_photo")).scalar_one() == 2


# --- two sweeps at the same instant --------------------------------------------------------------------------

def _due_patients(world, count: int) -> list[str]:
    phones = [f"+4477009{n:05d}" for n in range(10000, 10000 + count)]
    for phone in phones:
        enrol(world.clinic, phone)
    return phones


def test_two_sweeps_in_threads_at_once_send_no_duplicate(sms_app, fake_twilio, world):
    phones = _due_patients(world, 40)
    now = utc(2027, 2, 2, 10)
    results, errors = [], []

    def one_sweep() -> None:
        try:
            with sms_app.app_context():
                results.append(sweep.dispatch(now))
                db.session.remove()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one_sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert sum(r["sent"] for r in results) == 40
    assert sorted(m.to for m in fake_twilio.messages) == phones
    assert_once_each(fake_twilio)


def test_two_sweep_processes_at_once_send_no_duplicate(sms_app, fake_twilio, world, backend):
    if backend != "postgresql":
        pytest.skip("two processes are the PostgreSQL acceptance test (SQLite: the threads test above)")
    phones = _due_patients(world, 60)
    env = dict(os.environ, DATABASE_URL=sms_app.config["DATABASE_URL"], SECRET_KEY=sms_app.config["SECRET_KEY"],
               PUBLIC_BASE_URL=sms_app.config["PUBLIC_BASE_URL"], SCHEDULER_ENABLED="0", JOB_BACKEND="sync",
               MEDIA_ROOT=sms_app.config["MEDIA_ROOT"], **fake_twilio.config(timeout_seconds=5))
    command = [sys.executable, "-m", "flask", "--app", "app", "reminders", "dispatch", "--now",
               "2027-02-02T10:00:00+00:00"]
    procs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sum(s["sent"] for s in summaries) == 60
    assert sorted(m.to for m in fake_twilio.messages) == phones
    assert_once_each(fake_twilio)
    sent_rows = db.session.execute(select(func.count(OutboundMessage.id)).where(OutboundMessage.status == "sent"))
    assert sent_rows.scalar_one() == 60


def test_an_outage_mid_sweep_hands_back_what_was_claimed_but_not_sent(sms_app, fake_twilio, world, monkeypatch):
    from notifications import SendResult

    monkeypatch.setattr(outbox, "BATCH", 2)
    real = sms_app.extensions["sms_sender"]

    class DownAfterFirst:
        """Twilio answers the first request, then is down (503s, exhausted inside the sender)."""

        def __init__(self) -> None:
            self.calls, self.lock = 0, threading.Lock()

        def send(self, message):
            with self.lock:
                self.calls += 1
                first = self.calls == 1
            return real.send(message) if first else SendResult(status="failed", error_code=503, retryable=True)

        def lookup(self, message, **kwargs):
            return real.lookup(message, **kwargs)

    phones = [f"+4477009008{n:02d}" for n in range(7)]
    for phone in phones:
        enrol(world.clinic, phone)
    sms_app.extensions["sms_sender"] = DownAfterFirst()
    summary = sweep.dispatch(utc(2027, 2, 2, 10))
    assert summary["sent"] == 1 and summary.get("stopped_early") == 1 and summary.get("retrying") == 2, \
        sorted(summary.items())
    statuses = Counter(db.session.execute(select(OutboundMessage.status)).scalars())
    assert statuses == {"sent": 1, "pending": 6}  # nothing left 'sending'
    sms_app.extensions["sms_sender"] = real
    sweep.dispatch(utc(2027, 2, 2, 10, 5))
    assert sorted(m.to for m in fake_twilio.messages) == phones
    assert_once_each(fake_twilio)
