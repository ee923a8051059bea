"""The triage queue: raising, ordering, claiming and resolving alerts."""
from __future__ import annotations

import base64
import logging
from datetime import date, timedelta
from typing import Optional

from flask import abort
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError

from followup import audit
from followup.db import db, utcnow
from followup.models import Alert, PlanItem, Site, User

log = logging.getLogger(__name__)

# Most urgent first: priority 1 before 3, then the higher score, then the older alert.
QUEUE_ORDER = (Alert.priority.asc(), Alert.recurrence_score.desc(), Alert.created_at.asc(), Alert.id.asc())


def queue_query(clinic_id: int, status: str = "open") -> Select:
    statuses = ("open", "claimed") if status == "active" else (status,)
    return select(Alert).where(Alert.clinic_id == clinic_id, Alert.status.in_(statuses)).order_by(*QUEUE_ORDER)


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def decode_cursor(cursor: Optional[str]) -> int:
    if not cursor:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        offset = int(value)
    except (ValueError, UnicodeDecodeError):
        abort(400, "cursor is not one this API returned")
    if kind != "o" or not 0 <= offset < 2**31:
        abort(400, "cursor is not one this API returned")
    return offset


def alert_for(user: User, alert_id: int) -> Alert:
    alert = db.session.get(Alert, alert_id)
    if alert is None or alert.clinic_id != user.clinic_id:
        abort(404, f"Alert {alert_id} doesn't exist.")
    return alert


def open_alert(site_id: int, photo_id: Optional[int], kind: str) -> Optional[Alert]:
    """The unresolved alert for this site, photo and kind (one at most: the partial unique indexes
    ``uq_alert_open_photo`` and ``uq_alert_open_site``); the most advanced, then the oldest, should a database
    that predates them hold several."""
    return db.session.execute(
        select(Alert).where(Alert.site_id == site_id, Alert.photo_id.is_(None) if photo_id is None
                            else Alert.photo_id == photo_id, Alert.kind == kind, Alert.status != "resolved")
        .order_by((Alert.status == "claimed").desc(), Alert.created_at, Alert.id).limit(1)
    ).scalars().first()


def raise_alert(*, clinic_id: int, site_id: int, photo_id: Optional[int], kind: str, priority: int,
                score: float, reasons: list[str]) -> Alert:
    """Open an alert, or update the site's unresolved one for the same photo and kind (a job run twice, or
    two sweeps escalating one missed photo, raise one alert). Part of the caller's transaction.

    The insert runs in a SAVEPOINT: when another process opened the same alert meanwhile, the unique index
    refuses ours and that alert is updated instead, so the caller's transaction goes on."""
    alert = open_alert(site_id, photo_id, kind)
    if alert is None:
        alert = Alert(clinic_id=clinic_id, site_id=site_id, photo_id=photo_id, kind=kind, priority=priority,
                      recurrence_score=score, reasons=reasons)
        try:
            with db.session.begin_nested():
                db.session.add(alert)
        except IntegrityError:
            alert = open_alert(site_id, photo_id, kind)
            if alert is None:
                raise
            log.info("alert for site %s (%s) raised meanwhile by another process: updating it", site_id, kind)
    alert.priority, alert.recurrence_score, alert.reasons = priority, score, reasons
    db.session.flush()
    from followup.reminders import notify_alert

    notify_alert(alert)  # priority 1: the dermatologist gets an SMS now (once per alert); others go in the digest
    return alert


def claim(alert: Alert, user: User) -> Alert:
    if alert.status == "resolved":
        abort(409, "This alert is already resolved.")
    if alert.status == "claimed" and alert.claimed_by_id != user.id:
        abort(409, "A colleague has already claimed this alert.")
    alert.status, alert.claimed_by_id, alert.claimed_at = "claimed", user.id, utcnow()
    db.session.commit()
    return alert


DEFAULT_RETAKE_REASON = "we would like a new photo to compare"
DEFAULT_VISIT_DAYS = 14


def resolve(alert: Alert, user: User, *, outcome: str, note: Optional[str], retake_reason: Optional[str] = None,
            visit_date: Optional[date] = None) -> Alert:
    """Close an alert with its outcome, and do what the outcome asks, whichever page or API resolved it:
    ``rephoto`` texts the patient a fresh link, ``visit`` adds a clinic visit to the plan."""
    from followup import reminders
    from followup.patients import site_plan

    if alert.status == "resolved":
        abort(409, "This alert is already resolved.")
    if alert.status == "claimed" and alert.claimed_by_id != user.id:
        abort(409, "A colleague has claimed this alert; ask them before resolving it.")
    site = db.session.get(Site, alert.site_id)
    if outcome == "rephoto":
        reminders.request_retake(site, [retake_reason or DEFAULT_RETAKE_REASON], key=f"retake:alert:{alert.id}",
                                 user_id=user.id)
    elif outcome == "visit" and (plan := site_plan(site)) is not None:
        due = visit_date or utcnow().date() + timedelta(days=DEFAULT_VISIT_DAYS)
        db.session.add(PlanItem(plan_id=plan.id, kind="visit", due_date=due))
    alert.status, alert.outcome, alert.note = "resolved", outcome, note
    alert.resolved_by_id, alert.resolved_at = user.id, utcnow()
    audit.record("resolve_alert", "alert", alert.id, user=user, commit=False, outcome=outcome)
    db.session.commit()
    return alert
