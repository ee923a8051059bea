"""The patient rules, kept for every text to a patient: no text in quiet hours, one text a day.

The day ledger (`PatientSmsDay`, unique per patient and local day) decides who has a patient's day, between
sweeps and processes alike; `reminder_guard` checks both rules again right before a text leaves.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import select

from followup.db import by_id, db, insert_ignoring_conflicts, utcnow
from followup.models import OutboundMessage, Patient, PatientSmsDay, Reminder
from followup.models.reminders import ReminderStatus
from followup.outreach.hours import at_local, is_quiet, quiet_ends, zone
from followup.outreach.outbox import Hold

#: Who holds a patient's day in the ledger: ``("reminder", reminder id)`` or ``("message", outbox id)``.
Owner = tuple[str, int]


def take_days(claims: list[tuple[Owner, int, date]]) -> set[Owner]:
    """Give each ``(owner, patient_id, local day)`` the patient's one text of that day, first come first
    served in the order given; answers the owners that have it. The unique key decides between processes."""
    if not claims:
        return set()
    patients, days = {c[1] for c in claims}, {c[2] for c in claims}
    owners = _day_owners(patients, days)
    wanted: dict[tuple[int, date], Owner] = {}
    for owner, patient_id, day in claims:
        key = (patient_id, day)
        if key not in owners and key not in wanted:
            wanted[key] = owner
    if wanted:
        db.session.execute(
            insert_ignoring_conflicts(PatientSmsDay.__table__, ["patient_id", "day"]),
            [dict(patient_id=p, day=d, reminder_id=owner[1] if owner[0] == "reminder" else None,
                  outbound_message_id=owner[1] if owner[0] == "message" else None, created_at=utcnow())
             for (p, d), owner in wanted.items()])
        owners = _day_owners(patients, days)  # another process may have been first: the table says who
    return {owner for owner, patient_id, day in claims if owners.get((patient_id, day)) == owner}


def _day_owners(patients: set[int], days: set[date]) -> dict[tuple[int, date], Owner]:
    rows = db.session.execute(
        select(PatientSmsDay.patient_id, PatientSmsDay.day, PatientSmsDay.reminder_id,
               PatientSmsDay.outbound_message_id)
        .where(PatientSmsDay.patient_id.in_(list(patients)), PatientSmsDay.day.in_(list(days)))
    ).all()
    return {(p, d): ("reminder", r) if r is not None else ("message", m) for p, d, r, m in rows}


#: Texts to patients, besides the reminders, that keep the patient rules (quiet hours, one text a day).
RULED_PURPOSES = ("retake",)


def reminder_guard(rows: list[OutboundMessage], now: datetime) -> dict[int, Hold]:
    """The patient rules, checked right before a text to a patient leaves (a retry may come hours later):
    a reminder cancelled or past its moment is not sent; no reminder and no retake request in quiet hours;
    one of them a day (`PatientSmsDay`), whoever asks first — the sweep's reminders take their day when
    queued, so a retake request on a day that already had a reminder waits for the next day."""
    reminders = {r.outbound_message_id: r for r in db.session.execute(
        select(Reminder).where(Reminder.outbound_message_id.in_([row.id for row in rows]))).scalars()}
    others = [row for row in rows if row.id not in reminders and row.patient_id is not None
              and row.purpose in RULED_PURPOSES]
    if not reminders and not others:
        return {}
    patients = by_id(Patient, {r.patient_id for r in reminders.values()} | {row.patient_id for row in others})
    holds: dict[int, Hold] = {}
    wanted: list[tuple[Owner, int, date]] = []
    for row in rows:
        reminder = reminders.get(row.id)
        if reminder is not None:
            patient_id, owner = reminder.patient_id, ("reminder", reminder.id)
            if reminder.status == ReminderStatus.CANCELLED:
                holds[row.id] = Hold("cancel", reminder.detail or "reminder cancelled")
                continue
            if reminder.expires_at is not None and now >= reminder.expires_at:
                reminder.status, reminder.detail = ReminderStatus.EXPIRED, "Twilio could not take it in time"
                holds[row.id] = Hold("cancel", "too late to be useful")
                continue
        elif row.patient_id is not None and row.purpose in RULED_PURPOSES:
            patient_id, owner = row.patient_id, ("message", row.id)
        else:
            continue
        tz = zone(patients[patient_id].timezone)
        if is_quiet(now, tz):
            holds[row.id] = Hold("defer", "quiet hours", quiet_ends(now, tz))
        else:
            wanted.append((owner, patient_id, now.astimezone(tz).date()))
    # A retry on a later day needs that day's slot too (the first attempt's day is already this reminder's).
    granted = take_days(wanted)
    message_of = {("reminder", r.id): message_id for message_id, r in reminders.items()}
    for owner, patient_id, day in wanted:
        if owner not in granted:
            message_id = message_of[owner] if owner[0] == "reminder" else owner[1]
            tz = zone(patients[patient_id].timezone)
            holds[message_id] = Hold("defer", "one text a day", at_local(day + timedelta(days=1), tz))
    return holds
