"""The triage queue: raising, ordering, claiming and resolving alerts."""
from __future__ import annotations

import base64
import logging
from datetime import date, datetime, timedelta
from typing import Any, Optional

from flask import abort, current_app
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from followup import audit
from followup.db import db, utcnow
from followup.errors import DomainError
from followup.models import Alert, PlanItem, Site, User
from followup.models.alerts import AlertKind, AlertPriority, AlertStatus
from followup.models.plans import PlanItemKind
from followup.outreach.texts import request_retake
from followup.records.patients import site_plan
from followup.triage.notify import notify_alert

log = logging.getLogger(__name__)


class AlertConflict(DomainError):
    """The alert is not the caller's to change now: a colleague holds it, it is resolved, or it changed
    meanwhile. The API answers 409; the pages flash the message."""

    status = 409


class InvalidAssignee(DomainError):
    """An alert can be given only to an active dermatologist of its clinic (422)."""

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
                            else Alert.photo_id == photo_id, Alert.kind == kind, Alert.status != AlertStatus.RESOLVED)
        .order_by((Alert.status == AlertStatus.CLAIMED).desc(), Alert.created_at, Alert.id).limit(1)
    ).scalars().first()


def raise_alert(*, clinic_id: int, site_id: int, photo_id: Optional[int], kind: AlertKind, priority: AlertPriority,
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
    notify_alert(alert)  # priority 1: the dermatologist gets an SMS now (once per alert); others go in the digest
    return alert


def _holder(alert: Alert) -> str:
    """Who holds ``alert`` after a change lost to them (see `_change_if_free`). The claim may have been released
    between the UPDATE and the reload, so an alert that is not claimed now is a 409 to try again, not a holder."""
    holder = db.session.get(User, alert.claimed_by_id) if alert.claimed_by_id is not None else None
    if alert.status != AlertStatus.CLAIMED or holder is None:
        raise AlertConflict("The alert changed meanwhile; try again.")
    return holder.name or holder.email


def _change_if_free(alert: Alert, user: User, **values: Any) -> bool:
    """Change ``alert`` only if, in the database now, it is open or claimed by ``user``: one conditional UPDATE,
    so of two colleagues acting at once exactly one wins (the other may hold a copy read before the first wrote).
    ``alert`` is reloaded either way: what was written, or what beat it."""
    changed = db.session.execute(
        update(Alert)
        .where(Alert.id == alert.id,
               or_(Alert.status == AlertStatus.OPEN,
                   and_(Alert.status == AlertStatus.CLAIMED, Alert.claimed_by_id == user.id)))
        .values(**values).execution_options(synchronize_session=False)
    ).rowcount == 1
    db.session.refresh(alert)
    return changed


def claim(alert: Alert, user: User) -> Alert:
    if not _change_if_free(alert, user, status=AlertStatus.CLAIMED, claimed_by_id=user.id, claimed_at=utcnow()):
        if alert.status == AlertStatus.RESOLVED:
            raise AlertConflict("This alert is already resolved.")
        raise AlertConflict(f"{_holder(alert)} has already claimed this case.")
    # Audited in the claim's own transaction: no claim without its audit event.
    audit.record("claim_alert", "alert", alert.id, user=user, commit=False)
    db.session.commit()
    return alert


def _release_where(*conditions, by: Optional[User], reason: str) -> int:
    """Put the claimed alerts that match ``conditions`` back in the queue, each audited with who held it.
    Each UPDATE repeats the conditions, so a claim renewed or released meanwhile is left alone."""
    released = 0
    found = db.session.execute(
        select(Alert.id, Alert.claimed_by_id).where(Alert.status == AlertStatus.CLAIMED, *conditions))
    for alert_id, holder_id in found.all():
        if db.session.execute(
            update(Alert)
            .where(Alert.id == alert_id, Alert.status == AlertStatus.CLAIMED, Alert.claimed_by_id == holder_id,
                   *conditions)
            .values(status=AlertStatus.OPEN, claimed_by_id=None, claimed_at=None)
            .execution_options(synchronize_session=False)
        ).rowcount:
            audit.record("release_alert", "alert", alert_id, user=by, actor=None if by else "system", commit=False,
                         claimed_by=holder_id, reason=reason)
            released += 1
    return released


def release(alert: Alert, user: User) -> Alert:
    """The claimer hands the case back to the queue."""
    if not _release_where(Alert.id == alert.id, Alert.claimed_by_id == user.id, by=user, reason="released"):
        raise AlertConflict("Only the colleague who claimed this alert can release it; an admin can reassign it.")
    db.session.commit()
    return alert


def reassign(alert: Alert, admin: User, to: Optional[User]) -> Alert:
    """An admin's override, for a case whose claimer cannot act (away, gone): back to the queue (``to`` None)
    or claimed for ``to``, an active dermatologist of the clinic. Audited with who held it before. The UPDATE
    repeats the claim as read, so one that changed meanwhile is not overridden blindly: 409, nothing happens."""
    if to is not None and (to.clinic_id != alert.clinic_id or to.role != "dermatologist" or not to.active):
        raise InvalidAssignee("An alert can be given only to an active dermatologist of its clinic.")
    if alert.status == AlertStatus.RESOLVED:
        raise AlertConflict("This alert is already resolved.")
    if to is None and alert.status != AlertStatus.CLAIMED:
        raise AlertConflict("This alert is not claimed.")
    previous = alert.claimed_by_id
    seen = Alert.claimed_by_id.is_(None) if previous is None else Alert.claimed_by_id == previous
    values = ({"status": AlertStatus.CLAIMED, "claimed_by_id": to.id, "claimed_at": utcnow()} if to is not None
              else {"status": AlertStatus.OPEN, "claimed_by_id": None, "claimed_at": None})
    if not db.session.execute(
        update(Alert).where(Alert.id == alert.id, Alert.status == alert.status, seen)
        .values(**values).execution_options(synchronize_session=False)
    ).rowcount:
        raise AlertConflict("This alert changed meanwhile (claimed, released or resolved): look at it again.")
    audit.record("reassign_alert" if to is not None else "release_alert", "alert", alert.id, user=admin,
                 commit=False, claimed_by=previous, to=to.id if to is not None else None, reason="admin override")
    db.session.commit()
    return alert


def release_claims_of(user: User, *, by: User) -> int:
    """A colleague who leaves holds no case: their claims go back to the queue. Part of the caller's transaction."""
    return _release_where(Alert.claimed_by_id == user.id, by=by, reason="claimer deactivated")


def release_stale_claims(now: datetime) -> int:
    """Claims older than ``CLAIM_STALE_HOURS`` go back to the queue (run by the reminder sweep), so a case is
    never stuck with someone who is away; the claimer can claim it again. Commits."""
    cutoff = now - timedelta(hours=current_app.config["CLAIM_STALE_HOURS"])
    released = _release_where(Alert.claimed_at < cutoff, by=None, reason="stale claim")
    db.session.commit()
    return released


DEFAULT_RETAKE_REASON = "we would like a new photo to compare"
DEFAULT_VISIT_DAYS = 14


def resolve(alert: Alert, user: User, *, outcome: str, note: Optional[str], retake_reason: Optional[str] = None,
            visit_date: Optional[date] = None) -> Alert:
    """Close an alert with its outcome, and do what the outcome asks, whichever page or API resolved it:
    ``rephoto`` texts the patient a fresh link, ``visit`` adds a clinic visit to the plan."""
    # Closed first, in the same transaction as what the outcome does: a colleague resolving at once gets a 409
    # and texts no one.
    if not _change_if_free(alert, user, status=AlertStatus.RESOLVED, outcome=outcome, note=note, resolved_by_id=user.id,
                           resolved_at=utcnow()):
        if alert.status == AlertStatus.RESOLVED:
            raise AlertConflict("This alert is already resolved.")
        raise AlertConflict(f"{_holder(alert)} has claimed this case; ask them before resolving it.")
    site = db.session.get(Site, alert.site_id)
    if outcome == "rephoto":
        request_retake(site, [retake_reason or DEFAULT_RETAKE_REASON], key=f"retake:alert:{alert.id}",
                                 user_id=user.id)
    elif outcome == "visit" and (plan := site_plan(site)) is not None:
        due = visit_date or utcnow().date() + timedelta(days=DEFAULT_VISIT_DAYS)
        db.session.add(PlanItem(plan_id=plan.id, kind=PlanItemKind.VISIT, due_date=due))
    audit.record("resolve_alert", "alert", alert.id, user=user, commit=False, outcome=outcome)
    db.session.commit()
    return alert
