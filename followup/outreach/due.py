"""Deciding the reminders that are due: each is cancelled, expired, deferred, escalated or queued as a text.

A due row is claimed and decided in one transaction; a batch that raises is decided again row by row, so one
bad row costs only itself (logged, counted in ``errors``, tried again an hour later).
"""
from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, time, timedelta
from typing import Any, Optional
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, insert, select, update

from followup.db import by_id, claim_ids, db, utcnow
from followup.models import Clinic, OutboundMessage, Patient, Photo, PlanItem, Reminder, Site
from followup.models.alerts import AlertKind, AlertPriority
from followup.models.messages import OutboxStatus
from followup.models.photos import PhotoKind, PhotoStatus
from followup.models.plans import PlanItemStatus
from followup.models.reminders import ReminderKind, ReminderStatus
from followup.outreach.hours import at_local, is_quiet, quiet_ends, zone
from followup.outreach.reminders import PHOTO_EARLY_DAYS, PHOTO_KINDS, outbox_key
from followup.outreach.rules import take_days
from followup.outreach.texts import render_sms
from followup.records.links import create_links, sealed_link
from followup.triage.alerts import raise_alert

log = logging.getLogger(__name__)

_PRIORITY = {kind: n for n, kind in enumerate(ReminderKind)}
BATCH = 500


def _claim_due(now: datetime) -> Optional[list[int]]:
    """Due pending reminders, claimed for this transaction; None when none is due ([]: another sweep was faster)."""
    candidates = (
        select(Reminder.id).where(Reminder.status == ReminderStatus.PENDING, Reminder.due_at <= now)
        .order_by(Reminder.due_at, Reminder.id).limit(BATCH)
    )
    ids = claim_ids(Reminder, candidates)
    if not ids:
        return None
    # Conditional: on SQLite a concurrent sweep may have taken some of these meanwhile.
    return list(db.session.execute(
        update(Reminder).where(Reminder.id.in_(ids), Reminder.status == ReminderStatus.PENDING)
        .values(status=ReminderStatus.CLAIMED).returning(Reminder.id).execution_options(synchronize_session=False)
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
            update(Reminder).where(Reminder.id == reminder_id, Reminder.status == ReminderStatus.PENDING)
            .values(status=ReminderStatus.CLAIMED).returning(Reminder.id).execution_options(synchronize_session=False)
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
                update(Reminder).where(Reminder.id == reminder_id, Reminder.status == ReminderStatus.PENDING)
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
    items = by_id(PlanItem, {r.plan_item_id for r in reminders})
    sites = by_id(Site, {r.site_id for r in reminders})
    patients = by_id(Patient, {r.patient_id for r in reminders})
    clinics = by_id(Clinic, {p.clinic_id for p in patients.values()})
    last_photo = dict(db.session.execute(
        # A rejected photo answers nothing: the patient still owes a usable one.
        select(Photo.site_id, func.max(Photo.received_at))
        .where(Photo.site_id.in_(list(sites)), Photo.kind == PhotoKind.FOLLOWUP, Photo.status != PhotoStatus.REJECTED)
        .group_by(Photo.site_id)).all())
    outgoing: list[tuple[Reminder, dict[str, Any]]] = []
    candidates: list[tuple[Reminder, ZoneInfo, dict[str, Any]]] = []
    # The most important reminder of a patient's day comes first and takes the day.
    for reminder in sorted(reminders, key=lambda r: (r.patient_id, _PRIORITY[r.kind], r.due_at, r.id)):
        item, site, patient = items[reminder.plan_item_id], sites[reminder.site_id], patients[reminder.patient_id]
        tz = zone(patient.timezone)
        outcome = _cancel_reason(reminder, item, site, patient, last_photo.get(site.id), tz)
        if outcome is not None:
            _finish(reminder, ReminderStatus.CANCELLED, outcome)
            counts["cancelled"] += 1
            continue
        if reminder.kind == "photo_escalation":
            _escalate(reminder, item, site, patient, now)
            counts["escalated"] += 1
            continue
        if reminder.expires_at is not None and now >= reminder.expires_at:
            _finish(reminder, ReminderStatus.EXPIRED, "its moment passed before it could be sent")
            counts["expired"] += 1
            continue
        if is_quiet(now, tz):
            reminder.status, reminder.due_at = ReminderStatus.PENDING, quiet_ends(now, tz)
            reminder.detail = "quiet hours"
            counts["deferred"] += 1
            continue
        candidates.append((reminder, tz, dict(clinic=clinics[patient.clinic_id], site=site, patient=patient,
                                              due_date=item.due_date)))
    granted = take_days([(("reminder", r.id), r.patient_id, now.astimezone(tz).date())
                          for r, tz, _ in candidates])
    for reminder, tz, context in candidates:
        if ("reminder", reminder.id) in granted:
            outgoing.append((reminder, context))
        else:
            reminder.status, reminder.detail = ReminderStatus.PENDING, "one reminder a day"
            reminder.due_at = at_local(now.astimezone(tz).date() + timedelta(days=1), tz)
            counts["deferred"] += 1
    _queue_messages(outgoing, now)
    counts["queued"] += len(outgoing)
    return counts


def _cancel_reason(reminder: Reminder, item: PlanItem, site: Site, patient: Patient,
                   last_photo: Optional[datetime], tz: ZoneInfo) -> Optional[str]:
    if item.status != PlanItemStatus.PENDING:
        return f"plan item is {item.status}"
    if site.closed_at is not None:
        return "site closed"
    if reminder.kind in PHOTO_KINDS and last_photo is not None:
        if last_photo >= at_local(item.due_date - timedelta(days=PHOTO_EARLY_DAYS), tz, time(0)):
            item.status, item.completed_at = PlanItemStatus.DONE, last_photo
            return "photo received"
    if reminder.kind != "photo_escalation" and not patient.can_receive_sms:
        return "patient opted out" if patient.opted_out_at else "no SMS consent"
    return None


def _finish(reminder: Reminder, status: str, detail: str) -> None:
    reminder.status, reminder.detail, reminder.finished_at = status, detail, utcnow()


def _escalate(reminder: Reminder, item: PlanItem, site: Site, patient: Patient, now: datetime) -> None:
    sent = db.session.execute(
        select(Reminder.kind).join(OutboundMessage, OutboundMessage.id == Reminder.outbound_message_id)
        .where(Reminder.plan_item_id == item.id,
               OutboundMessage.status.in_((OutboxStatus.SENT, OutboxStatus.DELIVERED)))
    ).scalars().all()
    reasons = [f"No photo received for the photo due on {item.due_date.isoformat()}."]
    reasons.append(f"Reminded by SMS {len(sent)} time(s)." if sent else "No reminder SMS reached the patient.")
    if not patient.can_receive_sms:
        reasons.append("The patient does not receive SMS (opted out or no consent): please contact them.")
    alert = raise_alert(clinic_id=patient.clinic_id, site_id=site.id, photo_id=None, kind=AlertKind.NO_PHOTO,
                        priority=AlertPriority.HIGH if site.diagnosis == "melanoma" else AlertPriority.ROUTINE,
                        score=0.0, reasons=reasons)
    item.status = PlanItemStatus.MISSED
    reminder.alert_id = alert.id
    _finish(reminder, ReminderStatus.ESCALATED, "on the clinic's worklist")


def _queue_messages(outgoing: list[tuple[Reminder, dict[str, Any]]], now: datetime) -> None:
    """Render each reminder's text (with a fresh upload link where it asks for a photo) into the outbox.

    Set-based (one multi-row INSERT … RETURNING per table): a sweep may queue ten thousand at once.
    """
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
              purpose=reminder.kind, status=OutboxStatus.PENDING, attempts=0, created_at=created, updated_at=created)
         for reminder, ctx in outgoing],
    ).scalars().all()
    table = Reminder.__table__
    db.session.execute(
        update(table).where(table.c.id == bindparam("reminder_id"))
        .values(outbound_message_id=bindparam("message_id"), status=ReminderStatus.QUEUED, detail="in the outbox",
                finished_at=created),
        [dict(reminder_id=reminder.id, message_id=message_id)
         for (reminder, _), message_id in zip(outgoing, message_ids)],
    )
