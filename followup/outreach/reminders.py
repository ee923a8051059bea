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
``followup/templates/sms/<kind>.txt`` into the outbox, which `followup.outreach.outbox` sends exactly once. The same
two rules hold retake requests back at send time (`followup.outreach.rules`: one place for them).

A plan item re-dated gets its reminders for the new date, those already sent included (`reschedule_item`).
A batch that raises is decided again row by row, so one bad row costs only itself (logged, counted in the
summary's ``errors``, tried again an hour later); a failing step of the sweep does not stop the next.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Optional
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select, update

from followup.db import db, insert_ignoring_conflicts, utcnow
from followup.models import FollowUpPlan, OutboundMessage, Patient, Photo, PlanItem, Reminder, Site
from followup.models.messages import OutboxStatus
from followup.models.plans import PlanItemKind, PlanItemStatus
from followup.models.reminders import ReminderKind, ReminderStatus
from followup.outreach import outbox
from followup.outreach.hours import at_local, zone

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
SMS_KINDS = tuple(k for k in ReminderKind if k != ReminderKind.PHOTO_ESCALATION)
PHOTO_KINDS = (ReminderKind.PHOTO_HEADS_UP, ReminderKind.PHOTO_DUE, ReminderKind.PHOTO_AGAIN,
               ReminderKind.PHOTO_ESCALATION)


# --- planning ---------------------------------------------------------------------------------------------------

def schedule_for(kind: str, due: date, tz: ZoneInfo) -> list[tuple[str, datetime, Optional[datetime]]]:
    """``(reminder kind, due_at, expires_at)`` for a plan item of ``kind`` due on ``due``."""
    if kind == PlanItemKind.PHOTO:
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
    if reopen and item.status == PlanItemStatus.MISSED:
        item.status, item.completed_at = PlanItemStatus.PENDING, None
    site = db.session.get(Site, item.plan.site_id)
    times = {kind: (due_at, expires_at)
             for kind, due_at, expires_at in schedule_for(item.kind, item.due_date, zone(site.patient.timezone))}
    for reminder in db.session.execute(select(Reminder).where(Reminder.plan_item_id == item.id)).scalars():
        if reminder.kind not in times:
            continue
        if reminder.status != ReminderStatus.PENDING:
            if item.status != PlanItemStatus.PENDING:
                continue  # a done or cancelled item's finished reminders stay as they were
            if reminder.status == ReminderStatus.QUEUED and reminder.outbound_message_id is not None:
                outbox.cancel_pending(OutboundMessage.id == reminder.outbound_message_id, "re-dated")
            reminder.status, reminder.detail, reminder.finished_at = ReminderStatus.PENDING, "re-dated", None
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
        .where(PlanItem.status == PlanItemStatus.PENDING,
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
                             due_at=due_at, expires_at=expires_at,
                             status=ReminderStatus.EXPIRED if stale else ReminderStatus.PENDING,
                             detail="planned too late to send" if stale else None, created_at=created,
                             finished_at=created if stale else None))
    for start in range(0, len(rows), 2000):
        db.session.execute(insert_ignoring_conflicts(Reminder.__table__, ["plan_item_id", "kind"]),
                           rows[start:start + 2000])
    if rows:
        db.session.commit()
    return len(rows)


def outbox_key(reminder: Reminder) -> str:
    """``reminder:17``; ``reminder:17:2`` for the third cycle (its plan item re-dated twice after it was sent)."""
    return f"reminder:{reminder.id}" + (f":{reminder.cycle}" if reminder.cycle else "")


# --- what cancels reminders ------------------------------------------------------------------------------------

def cancel_reminders(where, detail: str) -> int:
    """Cancel pending reminders matching ``where`` and withdraw their messages not yet sent."""
    ids = list(db.session.execute(
        select(Reminder.id).where(Reminder.status.in_((ReminderStatus.PENDING, ReminderStatus.QUEUED)), where)
    ).scalars())
    if not ids:
        return 0
    db.session.execute(
        update(Reminder).where(Reminder.id.in_(ids), Reminder.status == ReminderStatus.PENDING)
        .values(status=ReminderStatus.CANCELLED, detail=detail, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    queued = select(Reminder.outbound_message_id).where(Reminder.id.in_(ids), Reminder.status == ReminderStatus.QUEUED)
    outbox.cancel_pending(OutboundMessage.id.in_(queued), detail)
    db.session.execute(
        update(Reminder).where(Reminder.id.in_(ids), Reminder.status == ReminderStatus.QUEUED,
                               Reminder.outbound_message_id.in_(
                                   select(OutboundMessage.id).where(OutboundMessage.status == OutboxStatus.CANCELLED)))
        .values(status=ReminderStatus.CANCELLED, detail=detail, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return len(ids)


def on_photo_rejected(photo: Photo) -> int:
    """The pipeline could not use ``photo``: the photo requests it had answered are open again, and their
    re-reminder and escalation come back (those not yet sent), so an ignored retake is still chased."""
    items = list(db.session.execute(
        select(PlanItem).join(FollowUpPlan, FollowUpPlan.id == PlanItem.plan_id)
        .where(FollowUpPlan.site_id == photo.site_id, PlanItem.kind == PlanItemKind.PHOTO,
               PlanItem.status == PlanItemStatus.DONE, PlanItem.completed_at == photo.received_at)
    ).scalars())
    for item in items:
        item.status, item.completed_at = PlanItemStatus.PENDING, None
    if not items:
        return 0
    return db.session.execute(
        update(Reminder)
        .where(Reminder.plan_item_id.in_([i.id for i in items]), Reminder.status == ReminderStatus.CANCELLED,
               Reminder.detail == "photo received", Reminder.outbound_message_id.is_(None))
        .values(status=ReminderStatus.PENDING, detail=None, finished_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount


def on_photo_received(photo: Photo, *, commit: bool = True) -> int:
    """A photo came: its site's photo requests now due (or due within a few days) are done, their reminders
    cancelled. Called by `followup.intake.photos.receive_photo` after the photo is committed; never raises there."""
    try:
        site = db.session.get(Site, photo.site_id)
        tz = zone(site.patient.timezone)
        received_day = photo.received_at.astimezone(tz).date()
        items = list(db.session.execute(
            select(PlanItem).join(FollowUpPlan, FollowUpPlan.id == PlanItem.plan_id)
            .where(FollowUpPlan.site_id == site.id, PlanItem.kind == PlanItemKind.PHOTO,
                   PlanItem.status == PlanItemStatus.PENDING,
                   PlanItem.due_date <= received_day + timedelta(days=PHOTO_EARLY_DAYS),
                   PlanItem.due_date >= received_day - timedelta(days=PLAN_BEHIND_DAYS))
        ).scalars())
        for item in items:
            item.status, item.completed_at = PlanItemStatus.DONE, photo.received_at
        cancelled = cancel_reminders(Reminder.plan_item_id.in_([i.id for i in items]), "photo received") \
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
    cancelled = cancel_reminders(Reminder.site_id == site_id, detail)
    if commit:
        db.session.commit()
    return cancelled
