"""Who is due for which SMS, and when: the reminder sweep behind ``flask --app app reminders dispatch``.

For every pending plan item due within the next two weeks the sweep plans reminder rows once (unique per item
and kind), at the clinic's send time (``REMINDER_LOCAL_TIME``, default 10:00) in the patient's timezone:

========================= ======================== =========================================================
kind                      when                     what
========================= ======================== =========================================================
``photo_heads_up``        2 days before the photo  "we'll text you a link on …"
``photo_due``             the photo's due day      the request, with a fresh one-time upload link
``photo_again``           3 days after             one re-reminder, with a new link, when nothing came
``photo_escalation``      7 days after             no SMS: the site goes on the clinic's worklist (an alert)
``visit_two_weeks``       14 days before a visit   the visit is due, call the clinic (its phone number)
``visit_day_before``      the day before a visit   the visit is tomorrow
========================= ======================== =========================================================

A due row is claimed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises writers) and decided in one
transaction: cancelled when a photo came, the site closed, the patient opted out or never consented; expired
when it is too late to make sense; deferred out of quiet hours (``QUIET_HOURS``, default 20:00–09:00, in the
patient's timezone) and past a day on which the patient already had a text (`PatientSmsDay`, unique per
patient and day, so two sweeps cannot both use a day); otherwise its text is rendered from
``followup/templates/sms/<kind>.txt`` into the outbox, which `followup.messaging` sends exactly once. The same
two rules hold retake requests back at send time (`reminder_guard`: one place for them).

A plan item re-dated gets its reminders for the new date, those already sent included (`reschedule_item`).
A batch that raises is decided again row by row, so one bad row costs only itself (logged, counted in the
summary's ``errors``, tried again an hour later); a failing step of the sweep does not stop the next.
"""
from __future__ import annotations

import logging
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, current_app, render_template
from sqlalchemy import and_, bindparam, exists, func, insert, select, update

from followup import accounts, alerts, messaging
from followup.db import db, utcnow
from followup.models import (
    Alert, Clinic, FollowUpPlan, InboundMessage, OutboundMessage, Patient, PatientSmsDay, Photo, PlanItem,
    Reminder, Site, User,
)
from followup.models.reminders import REMINDER_KINDS

log = logging.getLogger(__name__)

HEADS_UP_DAYS = 2
AGAIN_AFTER_DAYS = 3
ESCALATE_AFTER_DAYS = 7
VISIT_EARLY_DAYS = 14
#: A photo received up to this many days before its due date answers the request.
PHOTO_EARLY_DAYS = 3
#: Plan items this far ahead get their reminder rows (the two-week visit reminder, plus timezones).
PLAN_AHEAD_DAYS = VISIT_EARLY_DAYS + 2
#: Pending items further in the past than this are not planned any more (nothing sensible left to send).
PLAN_BEHIND_DAYS = ESCALATE_AFTER_DAYS + 2
SMS_KINDS = tuple(k for k in REMINDER_KINDS if k != "photo_escalation")
PHOTO_KINDS = ("photo_heads_up", "photo_due", "photo_again", "photo_escalation")
_PRIORITY = {kind: n for n, kind in enumerate(REMINDER_KINDS)}
BATCH = 500


# --- time -----------------------------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def zone(name: Optional[str]) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown timezone %r; using UTC", name)
        return ZoneInfo("UTC")


def _clock(value: str) -> time:
    hours, _, minutes = value.strip().partition(":")
    return time(int(hours), int(minutes or 0))


def quiet_hours() -> tuple[time, time]:
    """``QUIET_HOURS`` as (start, end), e.g. ``20:00-09:00``; start == end means no quiet hours."""
    start, _, end = current_app.config["QUIET_HOURS"].partition("-")
    return _clock(start), _clock(end)


def is_quiet(moment: datetime, tz: ZoneInfo) -> bool:
    start, end = quiet_hours()
    now = moment.astimezone(tz).time()
    if start == end:
        return False
    return (now >= start or now < end) if start > end else (start <= now < end)


def quiet_ends(moment: datetime, tz: ZoneInfo) -> datetime:
    """The first moment (UTC) at or after ``moment`` outside quiet hours."""
    _, end = quiet_hours()
    local = moment.astimezone(tz)
    candidate = datetime.combine(local.date(), end, tzinfo=tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=tz)
    return candidate.astimezone(timezone.utc)


def at_local(day: date, tz: ZoneInfo, clock: Optional[time] = None) -> datetime:
    """``day`` at ``clock`` (default ``REMINDER_LOCAL_TIME``) in ``tz``, as UTC."""
    clock = clock or _clock(current_app.config["REMINDER_LOCAL_TIME"])
    return datetime.combine(day, clock, tzinfo=tz).astimezone(timezone.utc)


def sms_date(value: date) -> str:
    """``Tuesday 3 March``: unambiguous in every English-speaking country."""
    return f"{value:%A} {value.day} {value:%B}"


def init_app(app: Flask) -> None:
    app.add_template_filter(sms_date, "sms_date")


def render_sms(name: str, **context: Any) -> str:
    """A text from ``templates/sms/<name>.txt``, whitespace collapsed to single spaces."""
    return " ".join(render_template(f"sms/{name}.txt", **context).split())


# --- planning ---------------------------------------------------------------------------------------------------

def schedule_for(kind: str, due: date, tz: ZoneInfo) -> list[tuple[str, datetime, Optional[datetime]]]:
    """``(reminder kind, due_at, expires_at)`` for a plan item of ``kind`` due on ``due``."""
    if kind == "photo":
        heads_up, on_day = at_local(due - timedelta(days=HEADS_UP_DAYS), tz), at_local(due, tz)
        again, escalate = at_local(due + timedelta(days=AGAIN_AFTER_DAYS), tz), at_local(
            due + timedelta(days=ESCALATE_AFTER_DAYS), tz)
        return [("photo_heads_up", heads_up, at_local(due, tz, time(0))), ("photo_due", on_day, again),
                ("photo_again", again, escalate), ("photo_escalation", escalate, None)]
    day_before = at_local(due - timedelta(days=1), tz)
    return [("visit_two_weeks", at_local(due - timedelta(days=VISIT_EARLY_DAYS), tz), day_before),
            ("visit_day_before", day_before, at_local(due, tz, time(0)))]


def reschedule_item(item: PlanItem, *, reopen: bool = True) -> None:
    """A plan item's due date moved: its reminders are planned for the new date.

    Those not yet sent move with it. Those already finished for the old date (sent, escalated, expired,
    cancelled) are planned again too — otherwise a re-dated item would never be reminded nor escalated
    again — as a new cycle of the same reminder (a new outbox key); a text queued but not yet sent is
    withdrawn (it names the old date). A ``missed`` item becomes pending again (``reopen``; False when
    staff set its state in the same edit). Part of the caller's transaction.
    """
    if reopen and item.status == "missed":
        item.status, item.completed_at = "pending", None
    site = db.session.get(Site, item.plan.site_id)
    times = {kind: (due_at, expires_at)
             for kind, due_at, expires_at in schedule_for(item.kind, item.due_date, zone(site.patient.timezone))}
    for reminder in db.session.execute(select(Reminder).where(Reminder.plan_item_id == item.id)).scalars():
        if reminder.kind not in times:
            continue
        if reminder.status != "pending":
            if item.status != "pending":
                continue  # a done or cancelled item's finished reminders stay as they were
            if reminder.status == "queued" and reminder.outbound_message_id is not None:
                messaging.cancel_pending(OutboundMessage.id == reminder.outbound_message_id, "re-dated")
            reminder.status, reminder.detail, reminder.finished_at = "pending", "re-dated", None
            reminder.outbound_message_id, reminder.alert_id = None, None
            reminder.cycle = (reminder.cycle or 0) + 1
        reminder.due_at, reminder.expires_at = times[reminder.kind]


def plan_reminders(now: datetime) -> int:
    """Create the reminder rows of plan items coming due; safe to run concurrently (conflicts are ignored)."""
    today = now.date()
    items = db.session.execute(
        select(PlanItem.id, PlanItem.kind, PlanItem.due_date, Site.id, Site.patient_id, Patient.timezone)
        .join(FollowUpPlan, FollowUpPlan.id == PlanItem.plan_id)
        .join(Site, Site.id == FollowUpPlan.site_id)
        .join(Patient, Patient.id == Site.patient_id)
        .where(PlanItem.status == "pending",
               PlanItem.due_date <= today + timedelta(days=PLAN_AHEAD_DAYS),
               PlanItem.due_date >= today - timedelta(days=PLAN_BEHIND_DAYS),
               Site.closed_at.is_(None),
               ~exists().where(Reminder.plan_item_id == PlanItem.id))
    ).all()
    rows = []
    created = utcnow()
    for item_id, kind, due, site_id, patient_id, tz_name in items:
        for reminder_kind, due_at, expires_at in schedule_for(kind, due, zone(tz_name)):
            stale = expires_at is not None and expires_at <= now
            rows.append(dict(plan_item_id=item_id, site_id=site_id, patient_id=patient_id, kind=reminder_kind,
                             due_at=due_at, expires_at=expires_at, status="expired" if stale else "pending",
                             detail="planned too late to send" if stale else None, created_at=created,
                             finished_at=created if stale else None))
    for start in range(0, len(rows), 2000):
        db.session.execute(messaging.insert_ignoring_conflicts(Reminder.__table__, ["plan_item_id", "kind"]),
                           rows[start:start + 2000])
    if rows:
        db.session.commit()
    return len(rows)


# --- the sweep ----------------------------------------------------------------------------------------------------

def dispatch(now: Optional[datetime] = None, *, send: bool = True) -> dict[str, int]:
    """One pass: plan, decide what is due, escalate, queue digests, send the outbox, reconcile unknowns, and
    put stale alert claims back in the triage queue. ``send=False`` leaves the outbox to the caller (under
    Celery the scheduler hands it to the ``messages`` workers).

    ``now`` is the sweep's idea of the time (``--now``; default the real time). Returns the summary printed
    by the CLI: ``sent``, ``escalated``, ``failed`` and the other counts; ``errors`` (when there were any)
    counts what could not be done because of an error — each logged with its traceback — while everything
    else went on: one bad row never stops a sweep, nor does one failing step stop the next.
    """
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    summary: Counter = Counter(planned=0)
    steps = (
        ("planning", lambda: Counter(planned=plan_reminders(now))),
        ("deciding due reminders", lambda: process_due(now)),
        ("queueing digests", lambda: queue_digests(now)),
        ("sending the outbox", lambda: messaging.deliver_pending(now, guard=reminder_guard) if send else Counter()),
        ("reconciling unknown sends", lambda: messaging.reconcile(now)),
        ("releasing stale claims", lambda: +Counter(claims_released=alerts.release_stale_claims(now))),
    )
    for name, step in steps:
        try:
            summary.update(step())
        except Exception:  # noqa: BLE001 - the next step (sending what is queued) must still run
            log.exception("reminder sweep: %s failed; the sweep goes on", name)
            db.session.rollback()
            summary["errors"] += 1
    result = {key: int(summary.get(key, 0)) for key in ("sent", "escalated", "failed")}
    result.update({key: int(value) for key, value in sorted(summary.items()) if key not in result})
    return result


def _claim_due(now: datetime) -> Optional[list[int]]:
    """Due pending reminders, claimed for this transaction; None when none is due ([]: another sweep was faster)."""
    candidates = (
        select(Reminder.id).where(Reminder.status == "pending", Reminder.due_at <= now)
        .order_by(Reminder.due_at, Reminder.id).limit(BATCH)
    )
    ids = messaging.claim_ids(Reminder, candidates)
    if not ids:
        return None
    # Conditional: on SQLite a concurrent sweep may have taken some of these meanwhile.
    return list(db.session.execute(
        update(Reminder).where(Reminder.id.in_(ids), Reminder.status == "pending")
        .values(status="claimed").returning(Reminder.id).execution_options(synchronize_session=False)
    ).scalars())


#: A reminder whose decision raised is tried again this much later (by the sweep's clock).
ERROR_RETRY = timedelta(hours=1)


def process_due(now: datetime) -> Counter:
    """Decide every due reminder row, a batch per transaction.

    A batch that raises is rolled back and its reminders decided one by one, each in its own transaction
    (the patient's most important first): the one that raises again is logged, counted in ``errors`` and
    put back as pending for `ERROR_RETRY` later, and all the others are sent.
    """
    summary: Counter = Counter()
    while True:
        ids = _claim_due(now)
        if not ids:
            db.session.commit()  # ends the (possibly empty) transaction
            if ids is None:
                return summary
            continue
        try:
            summary.update(_decide(ids, now))
            db.session.commit()
        except Exception:  # noqa: BLE001 - one bad row must not stop the batch: find it
            db.session.rollback()  # the rows are pending again
            log.warning("reminders: a batch of %d reminders failed; deciding them one by one", len(ids),
                        exc_info=True)
            summary.update(_decide_one_by_one(ids, now))


def _decide_one_by_one(ids: list[int], now: datetime) -> Counter:
    summary: Counter = Counter()
    rows = db.session.execute(
        select(Reminder.id, Reminder.patient_id, Reminder.kind, Reminder.due_at).where(Reminder.id.in_(ids))
    ).all()
    db.session.commit()
    for reminder_id, *_ in sorted(rows, key=lambda r: (r.patient_id, _PRIORITY.get(r.kind, 99), r.due_at, r.id)):
        claimed = db.session.execute(
            update(Reminder).where(Reminder.id == reminder_id, Reminder.status == "pending")
            .values(status="claimed").returning(Reminder.id).execution_options(synchronize_session=False)
        ).scalars().all()
        if not claimed:  # another sweep took it meanwhile
            db.session.commit()
            continue
        try:
            summary.update(_decide(claimed, now))
            db.session.commit()
        except Exception as exc:  # noqa: BLE001
            db.session.rollback()
            log.exception("reminders: reminder %s could not be decided; trying again in %s", reminder_id,
                          ERROR_RETRY)
            db.session.execute(  # the traceback is in the log; the row says only what kind of error it was
                update(Reminder).where(Reminder.id == reminder_id, Reminder.status == "pending")
                .values(due_at=now + ERROR_RETRY, detail=f"error ({type(exc).__name__}); tried again later")
                .execution_options(synchronize_session=False)
            )
            db.session.commit()
            summary["errors"] += 1
    return summary


def _decide(ids: list[int], now: datetime) -> Counter:
    counts: Counter = Counter()
    reminders = list(db.session.execute(
        select(Reminder).where(Reminder.id.in_(ids)).execution_options(populate_existing=True)).scalars())
    items = _by_id(PlanItem, {r.plan_item_id for r in reminders})
    sites = _by_id(Site, {r.site_id for r in reminders})
    patients = _by_id(Patient, {r.patient_id for r in reminders})
    clinics = _by_id(Clinic, {p.clinic_id for p in patients.values()})
    last_photo = dict(db.session.execute(
        # A rejected photo answers nothing: the patient still owes a usable one.
        select(Photo.site_id, func.max(Photo.received_at))
        .where(Photo.site_id.in_(list(sites)), Photo.kind == "followup", Photo.status != "rejected")
        .group_by(Photo.site_id)).all())
    outgoing: list[tuple[Reminder, dict[str, Any]]] = []
    candidates: list[tuple[Reminder, ZoneInfo, dict[str, Any]]] = []
    # The most important reminder of a patient's day comes first and takes the day.
    for reminder in sorted(reminders, key=lambda r: (r.patient_id, _PRIORITY[r.kind], r.due_at, r.id)):
        item, site, patient = items[reminder.plan_item_id], sites[reminder.site_id], patients[reminder.patient_id]
        tz = zone(patient.timezone)
        outcome = _cancel_reason(reminder, item, site, patient, last_photo.get(site.id), tz)
        if outcome is not None:
            _finish(reminder, "cancelled", outcome)
            counts["cancelled"] += 1
            continue
        if reminder.kind == "photo_escalation":
            _escalate(reminder, item, site, patient, now)
            counts["escalated"] += 1
            continue
        if reminder.expires_at is not None and now >= reminder.expires_at:
            _finish(reminder, "expired", "its moment passed before it could be sent")
            counts["expired"] += 1
            continue
        if is_quiet(now, tz):
            reminder.status, reminder.due_at, reminder.detail = "pending", quiet_ends(now, tz), "quiet hours"
            counts["deferred"] += 1
            continue
        candidates.append((reminder, tz, dict(clinic=clinics[patient.clinic_id], site=site, patient=patient,
                                              due_date=item.due_date)))
    granted = _take_days([(("reminder", r.id), r.patient_id, now.astimezone(tz).date())
                          for r, tz, _ in candidates])
    for reminder, tz, context in candidates:
        if ("reminder", reminder.id) in granted:
            outgoing.append((reminder, context))
        else:
            reminder.status, reminder.detail = "pending", "one reminder a day"
            reminder.due_at = at_local(now.astimezone(tz).date() + timedelta(days=1), tz)
            counts["deferred"] += 1
    _queue_messages(outgoing, now)
    counts["queued"] += len(outgoing)
    return counts


def _by_id(model, ids) -> dict[int, Any]:
    if not ids:
        return {}
    return {row.id: row for row in db.session.execute(select(model).where(model.id.in_(list(ids)))).scalars()}


def _cancel_reason(reminder: Reminder, item: PlanItem, site: Site, patient: Patient,
                   last_photo: Optional[datetime], tz: ZoneInfo) -> Optional[str]:
    if item.status != "pending":
        return f"plan item is {item.status}"
    if site.closed_at is not None:
        return "site closed"
    if reminder.kind in PHOTO_KINDS and last_photo is not None:
        if last_photo >= at_local(item.due_date - timedelta(days=PHOTO_EARLY_DAYS), tz, time(0)):
            item.status, item.completed_at = "done", last_photo
            return "photo received"
    if reminder.kind != "photo_escalation" and not patient.can_receive_sms:
        return "patient opted out" if patient.opted_out_at else "no SMS consent"
    return None


def _finish(reminder: Reminder, status: str, detail: str) -> None:
    reminder.status, reminder.detail, reminder.finished_at = status, detail, utcnow()


#: Who holds a patient's day in the ledger: ``("reminder", reminder id)`` or ``("message", outbox id)``.
Owner = tuple[str, int]


def _take_days(claims: list[tuple[Owner, int, date]]) -> set[Owner]:
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
            messaging.insert_ignoring_conflicts(PatientSmsDay.__table__, ["patient_id", "day"]),
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


def _escalate(reminder: Reminder, item: PlanItem, site: Site, patient: Patient, now: datetime) -> None:
    from followup.alerts import raise_alert

    sent = db.session.execute(
        select(Reminder.kind).join(OutboundMessage, OutboundMessage.id == Reminder.outbound_message_id)
        .where(Reminder.plan_item_id == item.id, OutboundMessage.status.in_(("sent", "delivered")))
    ).scalars().all()
    reasons = [f"No photo received for the photo due on {item.due_date.isoformat()}."]
    reasons.append(f"Reminded by SMS {len(sent)} time(s)." if sent else "No reminder SMS reached the patient.")
    if not patient.can_receive_sms:
        reasons.append("The patient does not receive SMS (opted out or no consent): please contact them.")
    alert = raise_alert(clinic_id=patient.clinic_id, site_id=site.id, photo_id=None, kind="no_photo",
                        priority=2 if site.diagnosis == "melanoma" else 3, score=0.0, reasons=reasons)
    item.status = "missed"
    reminder.alert_id = alert.id
    _finish(reminder, "escalated", "on the clinic's worklist")


def _queue_messages(outgoing: list[tuple[Reminder, dict[str, Any]]], now: datetime) -> None:
    """Render each reminder's text (with a fresh upload link where it asks for a photo) into the outbox.

    Set-based (one multi-row INSERT … RETURNING per table): a sweep may queue ten thousand at once.
    """
    from followup.links import create_links, sealed_link

    if not outgoing:
        return
    needs_link = [ctx for r, ctx in outgoing if r.kind in ("photo_due", "photo_again")]
    created = utcnow()
    tokens = create_links([(ctx["site"].id, ctx["patient"].clinic_id) for ctx in needs_link])
    for ctx, token in zip(needs_link, tokens):
        ctx["link"] = sealed_link(token)
    outbox = OutboundMessage.__table__
    message_ids = db.session.execute(
        insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True),
        [dict(idempotency_key=outbox_key(reminder), clinic_id=ctx["patient"].clinic_id,
              patient_id=ctx["patient"].id, to=ctx["patient"].phone, body=render_sms(reminder.kind, **ctx),
              purpose=reminder.kind, status="pending", attempts=0, created_at=created, updated_at=created)
         for reminder, ctx in outgoing],
    ).scalars().all()
    table = Reminder.__table__
    db.session.execute(
        update(table).where(table.c.id == bindparam("reminder_id"))
        .values(outbound_message_id=bindparam("message_id"), status="queued", detail="in the outbox",
                finished_at=created),
        [dict(reminder_id=reminder.id, message_id=message_id)
         for (reminder, _), message_id in zip(outgoing, message_ids)],
    )


def outbox_key(reminder: Reminder) -> str:
    """``reminder:17``; ``reminder:17:2`` for the third cycle (its plan item re-dated twice after it was sent)."""
    return f"reminder:{reminder.id}" + (f":{reminder.cycle}" if reminder.cycle else "")


#: Texts to patients, besides the reminders, that keep the patient rules (quiet hours, one text a day).
RULED_PURPOSES = ("retake",)


def reminder_guard(rows: list[OutboundMessage], now: datetime) -> dict[int, messaging.Hold]:
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
    patients = _by_id(Patient, {r.patient_id for r in reminders.values()} | {row.patient_id for row in others})
    holds: dict[int, messaging.Hold] = {}
    wanted: list[tuple[Owner, int, date]] = []
    for row in rows:
        reminder = reminders.get(row.id)
        if reminder is not None:
            patient_id, owner = reminder.patient_id, ("reminder", reminder.id)
            if reminder.status == "cancelled":
                holds[row.id] = messaging.Hold("cancel", reminder.detail or "reminder cancelled")
                continue
            if reminder.expires_at is not None and now >= reminder.expires_at:
                reminder.status, reminder.detail = "expired", "Twilio could not take it in time"
                holds[row.id] = messaging.Hold("cancel", "too late to be useful")
                continue
        elif row.patient_id is not None and row.purpose in RULED_PURPOSES:
            patient_id, owner = row.patient_id, ("message", row.id)
        else:
            continue
        tz = zone(patients[patient_id].timezone)
        if is_quiet(now, tz):
            holds[row.id] = messaging.Hold("defer", "quiet hours", quiet_ends(now, tz))
        else:
            wanted.append((owner, patient_id, now.astimezone(tz).date()))
    # A retry on a later day needs that day's slot too (the first attempt's day is already this reminder's).
    granted = _take_days(wanted)
    message_of = {("reminder", r.id): message_id for message_id, r in reminders.items()}
    for owner, patient_id, day in wanted:
        if owner not in granted:
            message_id = message_of[owner] if owner[0] == "reminder" else owner[1]
            tz = zone(patients[patient_id].timezone)
            holds[message_id] = messaging.Hold("defer", "one text a day", at_local(day + timedelta(days=1), tz))
    return holds


# --- what cancels reminders ------------------------------------------------------------------------------------

def _cancel_reminders(where, detail: str) -> int:
    """Cancel pending reminders matching ``where`` and withdraw their messages not yet sent."""
    ids = list(db.session.execute(select(Reminder.id).where(Reminder.status.in_(("pending", "queued")), where))
               .scalars())
    if not ids:
        return 0
    db.session.execute(
        update(Reminder).where(Reminder.id.in_(ids), Reminder.status == "pending")
        .values(status="cancelled", detail=detail, finished_at=utcnow()).execution_options(synchronize_session=False)
    )
    queued = select(Reminder.outbound_message_id).where(Reminder.id.in_(ids), Reminder.status == "queued")
    messaging.cancel_pending(OutboundMessage.id.in_(queued), detail)
    db.session.execute(
        update(Reminder).where(Reminder.id.in_(ids), Reminder.status == "queued",
                               Reminder.outbound_message_id.in_(
                                   select(OutboundMessage.id).where(OutboundMessage.status == "cancelled")))
        .values(status="cancelled", detail=detail, finished_at=utcnow()).execution_options(synchronize_session=False)
    )
    return len(ids)


def on_photo_rejected(photo: Photo) -> int:
    """The pipeline could not use ``photo``: the photo requests it had answered are open again, and their
    re-reminder and escalation come back (those not yet sent), so an ignored retake is still chased."""
    items = list(db.session.execute(
        select(PlanItem).join(FollowUpPlan, FollowUpPlan.id == PlanItem.plan_id)
        .where(FollowUpPlan.site_id == photo.site_id, PlanItem.kind == "photo", PlanItem.status == "done",
               PlanItem.completed_at == photo.received_at)
    ).scalars())
    for item in items:
        item.status, item.completed_at = "pending", None
    if not items:
        return 0
    return db.session.execute(
        update(Reminder)
        .where(Reminder.plan_item_id.in_([i.id for i in items]), Reminder.status == "cancelled",
               Reminder.detail == "photo received", Reminder.outbound_message_id.is_(None))
        .values(status="pending", detail=None, finished_at=None).execution_options(synchronize_session=False)
    ).rowcount


def on_photo_received(photo: Photo, *, commit: bool = True) -> int:
    """A photo came: its site's photo requests now due (or due within a few days) are done, their reminders
    cancelled. Called by `followup.photos.receive_photo` after the photo is committed; never raises there."""
    try:
        site = db.session.get(Site, photo.site_id)
        tz = zone(site.patient.timezone)
        received_day = photo.received_at.astimezone(tz).date()
        items = list(db.session.execute(
            select(PlanItem).join(FollowUpPlan, FollowUpPlan.id == PlanItem.plan_id)
            .where(FollowUpPlan.site_id == site.id, PlanItem.kind == "photo", PlanItem.status == "pending",
                   PlanItem.due_date <= received_day + timedelta(days=PHOTO_EARLY_DAYS),
                   PlanItem.due_date >= received_day - timedelta(days=PLAN_BEHIND_DAYS))
        ).scalars())
        for item in items:
            item.status, item.completed_at = "done", photo.received_at
        cancelled = _cancel_reminders(Reminder.plan_item_id.in_([i.id for i in items]), "photo received") \
            if items else 0
        if commit:
            db.session.commit()
        return cancelled
    except Exception:  # noqa: BLE001 - the photo is stored; the sweep notices it anyway
        log.exception("reminders: could not cancel reminders after photo %s", photo.id)
        db.session.rollback()
        return 0


def cancel_for_site(site_id: int, detail: str = "site closed", *, commit: bool = True) -> int:
    """Withdraw every pending reminder of a site (call when it is closed)."""
    cancelled = _cancel_reminders(Reminder.site_id == site_id, detail)
    if commit:
        db.session.commit()
    return cancelled


def opt_out(phone: str, *, source: str = "STOP", at: Optional[datetime] = None, commit: bool = True) -> list[Patient]:
    """Every patient with this number stops getting SMS; their pending reminders and messages are withdrawn."""
    patients = list(db.session.execute(select(Patient).where(Patient.phone == phone)).scalars())
    for patient in patients:
        if patient.opted_out_at is None:
            patient.opted_out_at = at or utcnow()
    if patients:
        ids = [p.id for p in patients]
        _cancel_reminders(and_(Reminder.patient_id.in_(ids), Reminder.kind.in_(SMS_KINDS)), f"opted out ({source})")
        messaging.cancel_pending(OutboundMessage.patient_id.in_(ids), f"opted out ({source})")
        log.info("reminders: %d patient(s) opted out (%s)", len(patients), source)
    if commit:
        db.session.commit()
    return patients


def opt_in(phone: str, *, commit: bool = True) -> list[Patient]:
    """START/UNSTOP: the number gets reminders again (from the next ones planned)."""
    patients = list(db.session.execute(select(Patient).where(Patient.phone == phone)).scalars())
    for patient in patients:
        patient.opted_out_at = None
    if commit:
        db.session.commit()
    return patients


# --- dermatologists ------------------------------------------------------------------------------------------

def _alert_link(alert_id: Optional[int] = None) -> str:
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return f"{base}/alerts/{alert_id}" if alert_id else f"{base}/queue"


def notify_alert(alert: Alert) -> list[OutboundMessage]:
    """An alert of priority 1 texts the site's dermatologist now (a link only, no patient details); others wait
    for the daily digest. When that dermatologist cannot be reached (left, no phone, none named), every other
    active dermatologist of the clinic with a phone is texted instead: an urgent case is never only a log line.
    Idempotent (one SMS per alert and recipient); part of the caller's transaction."""
    if alert.priority != 1:
        return []
    site = db.session.get(Site, alert.site_id)
    derm = db.session.get(User, site.dermatologist_id) if site and site.dermatologist_id else None
    if derm is not None and derm.active and derm.phone:
        recipients = {f"alert:{alert.id}": derm}
    else:
        recipients = {f"alert:{alert.id}:{colleague.id}": colleague
                      for colleague in accounts.dermatologists(alert.clinic_id) if colleague.phone}
    if not recipients:
        log.warning("alert %s: no dermatologist of clinic %s has a phone; it waits in the queue", alert.id,
                    alert.clinic_id)
    body = render_sms("alert_urgent", link=_alert_link(alert.id))
    messages = [message for key, to in recipients.items()
                if (message := messaging.enqueue(key=key, clinic_id=alert.clinic_id, user_id=to.id, to=to.phone,
                                                 body=body, purpose="alert_urgent")) is not None]
    if messages:
        from followup import scheduler

        scheduler.wake_soon(current_app._get_current_object())
    return messages


def queue_digests(now: datetime) -> Counter:
    """Once a day (``DIGEST_LOCAL_TIME`` in the clinic's timezone) each dermatologist with new alerts of
    priority 2 and 3 on their sites gets one SMS: how many, and a link."""
    counts: Counter = Counter()
    clock = _clock(current_app.config["DIGEST_LOCAL_TIME"])
    rows = db.session.execute(
        select(User, Clinic).join(Clinic, Clinic.id == User.clinic_id)
        .where(User.role == "dermatologist", User.active.is_(True), User.phone.is_not(None))
    ).all()
    for derm, clinic in rows:
        try:
            with db.session.begin_nested():  # one dermatologist's failure must not cost the others their digest
                if _queue_digest(derm, clinic, now, clock):
                    counts["digests"] += 1
        except Exception:  # noqa: BLE001
            log.exception("reminders: the digest for user %s could not be queued", derm.id)
            counts["errors"] += 1
    if counts:
        db.session.commit()
    return counts


def _queue_digest(derm: User, clinic: Clinic, now: datetime, clock: time) -> bool:
    tz = zone(clinic.timezone)
    day = now.astimezone(tz).date()
    window_end = at_local(day, tz, clock)
    if now < window_end or is_quiet(now, tz):
        return False
    key = f"digest:{derm.id}:{day.isoformat()}"
    if db.session.execute(select(OutboundMessage.id).where(OutboundMessage.idempotency_key == key)).first():
        return False
    new = db.session.execute(
        select(func.count(Alert.id)).join(Site, Site.id == Alert.site_id)
        .where(Site.dermatologist_id == derm.id, Alert.priority > 1, Alert.status.in_(("open", "claimed")),
               Alert.created_at >= window_end - timedelta(days=1), Alert.created_at < window_end)
    ).scalar_one()
    if not new:
        return False
    body = render_sms("alert_digest", count=new, day=day, link=_alert_link())
    return messaging.enqueue(key=key, clinic_id=clinic.id, user_id=derm.id, to=derm.phone, body=body,
                             purpose="alert_digest") is not None


# --- what staff see --------------------------------------------------------------------------------------------

def _pending_items(clinic_id: int):
    """Pending plan items of the clinic's open sites (with their site and patient)."""
    return (select(PlanItem, Site, Patient)
            .join(FollowUpPlan, FollowUpPlan.id == PlanItem.plan_id)
            .join(Site, Site.id == FollowUpPlan.site_id)
            .join(Patient, Patient.id == Site.patient_id)
            .where(Patient.clinic_id == clinic_id, PlanItem.status == "pending", Site.closed_at.is_(None)))


def visits_due(clinic_id: int, today: date, *, within_days: int = VISIT_EARLY_DAYS, include_overdue: bool = True,
               limit: Optional[int] = None) -> list[dict[str, Any]]:
    """Clinic visits due within ``within_days`` (and, with ``include_overdue``, those overdue), oldest first;
    at most ``limit``."""
    stmt = _pending_items(clinic_id).where(PlanItem.kind == "visit",
                                           PlanItem.due_date <= today + timedelta(days=within_days))
    if not include_overdue:
        stmt = stmt.where(PlanItem.due_date >= today)
    rows = db.session.execute(stmt.order_by(PlanItem.due_date, PlanItem.id).limit(limit)).all()
    return [dict(item=item, site=site, patient=patient, due_date=item.due_date, overdue=item.due_date < today)
            for item, site, patient in rows]


def overdue_items(clinic_id: int, today: date, *, offset: int = 0, limit: int = 50
                  ) -> list[tuple[PlanItem, Site, Patient, Optional[datetime]]]:
    """One page of the clinic's photos and visits past their due date and still pending, longest overdue
    first, each with its site's latest photo time.

    Bounded: only the clinic's pending past items are read (``ix_plan_item_status_due_date``), and latest
    photos only for the page's sites (``ix_photo_site_id_received_at``), never an aggregate of all photos.
    """
    rows = db.session.execute(
        _pending_items(clinic_id).where(PlanItem.due_date < today)
        .order_by(PlanItem.due_date, PlanItem.id).offset(offset).limit(limit)
    ).all()
    site_ids = {site.id for _, site, _ in rows}
    last_photo = dict(db.session.execute(
        select(Photo.site_id, func.max(Photo.received_at)).where(Photo.site_id.in_(site_ids))
        .group_by(Photo.site_id)
    ).all()) if site_ids else {}
    return [(item, site, patient, last_photo.get(site.id)) for item, site, patient in rows]


def inbox(clinic_id: int, *, limit: int = 100) -> list[InboundMessage]:
    """Texts from patients that are not keywords, waiting for staff (``handled_at`` empty), oldest first."""
    return list(db.session.execute(
        select(InboundMessage)
        .where(InboundMessage.clinic_id == clinic_id, InboundMessage.intent == "text",
               InboundMessage.handled_at.is_(None))
        .order_by(InboundMessage.received_at, InboundMessage.id).limit(limit)
    ).scalars())


__all__ = [
    "cancel_for_site", "dispatch", "inbox", "notify_alert", "on_photo_received", "on_photo_rejected", "reschedule_item", "opt_in", "opt_out",
    "overdue_items",
    "plan_reminders", "process_due", "queue_digests", "visits_due",
]


def request_retake(site: Site, reasons: list[str], *, key: str, user_id: Optional[int] = None
                   ) -> Optional[OutboundMessage]:
    """Ask the patient for a new photo with a fresh upload link (older links revoked), through the outbox.

    ``key`` makes the request idempotent (a job or a click run twice texts once): it is checked — and the
    outbox row holding it written — *before* the site's links are touched, so a second request changes
    nothing and the link the patient was just sent stays live. The text keeps the patient rules (quiet
    hours, one text a day: `reminder_guard`). A patient who cannot receive texts gets a ``not_sent`` row
    instead, so staff see that someone must call. Part of the caller's transaction.
    """
    from followup import links

    patient = site.patient
    clinic = db.session.get(Clinic, patient.clinic_id)
    if patient.can_receive_sms:
        message = messaging.enqueue(key=key, clinic_id=clinic.id, to=patient.phone, body="", purpose="retake",
                                    patient_id=patient.id, user_id=user_id)
    else:
        message = messaging.enqueue(key=key, clinic_id=clinic.id, to=patient.phone, body="", purpose="retake",
                                    patient_id=patient.id, user_id=user_id, status="not_sent",
                                    error_message="The patient cannot receive texts: please call them.")
    if message is None:
        return None  # asked before (or by another process meanwhile): the link already sent stays the live one
    token, _ = links.create_link(site)  # the site's older links revoked
    message.body = render_sms("photo_retake", clinic=clinic, site=site,
                              reasons="; ".join(reasons) or "it was not clear", link=links.sealed_link(token))
    db.session.flush()
    return message
