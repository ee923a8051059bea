"""What staff pages read: worklists (overdue items, visits due, the inbox, failed texts) and the clinic's
dermatologists. Reads only; the services change rows."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Optional

from sqlalchemy import case, func, select

from followup.db import db
from followup.models import Alert, FollowUpPlan, InboundMessage, OutboundMessage, Patient, Photo, PlanItem, Site, User
from followup.outreach.reminders import VISIT_EARLY_DAYS


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


def failed_messages(clinic_id: int, *, limit: int = 50) -> list[OutboundMessage]:
    """Messages that did not reach their recipient, newest first (the staff view shows them)."""
    return list(db.session.execute(
        select(OutboundMessage)
        .where(OutboundMessage.clinic_id == clinic_id, OutboundMessage.status.in_(("failed", "unknown")))
        .order_by(OutboundMessage.updated_at.desc(), OutboundMessage.id.desc()).limit(limit)
    ).scalars())


def dermatologists(clinic_id: int) -> list[User]:
    """The clinic's active dermatologists, by name."""
    return list(db.session.execute(
        select(User).where(User.clinic_id == clinic_id, User.role == "dermatologist", User.active)
        .order_by(User.name, User.email)
    ).scalars())


#: Outcomes that mean a flag pointed at something that needed action.
ACTIONABLE = ("visit", "biopsy")
SCORE_BANDS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.01))
#: The resolved alerts read for the photo-to-decision times (the latest ones).
DECISION_SAMPLE = 5000


def alert_performance(clinic_id: int) -> dict[str, Any]:
    """Resolved alerts' outcomes against their scores (per score band and priority, by outcome), and the hours
    from photo to decision of the latest ones, sorted."""
    band = case(*[(Alert.recurrence_score < hi, i) for i, (_lo, hi) in enumerate(SCORE_BANDS)],
                else_=len(SCORE_BANDS) - 1)
    actionable = func.sum(case((Alert.outcome.in_(ACTIONABLE), 1), else_=0))
    resolved = Alert.status == "resolved"
    by_band = {b: (n, a, mean) for b, n, a, mean in db.session.execute(
        select(band, func.count(), actionable, func.avg(Alert.recurrence_score))
        .where(Alert.clinic_id == clinic_id, resolved).group_by(band)
    ).all()}
    by_priority = {p: (n, a) for p, n, a in db.session.execute(
        select(Alert.priority, func.count(), actionable).where(Alert.clinic_id == clinic_id, resolved)
        .group_by(Alert.priority)
    ).all()}
    by_outcome = dict(db.session.execute(
        select(Alert.outcome, func.count()).where(Alert.clinic_id == clinic_id, resolved).group_by(Alert.outcome)
    ).all())
    bands = [{"label": f"{lo:.2f}–{min(hi, 1.0):.2f}", "n": by_band.get(i, (0, 0, 0))[0],
              "real": int(by_band.get(i, (0, 0, 0))[1] or 0), "score": float(by_band.get(i, (0, 0, 0))[2] or 0)}
             for i, (lo, hi) in enumerate(SCORE_BANDS)]
    priorities = [{"priority": p, "n": n, "real": int(a or 0)} for p, (n, a) in sorted(by_priority.items())]
    # Photo to decision: the latest resolved alerts that came from a photo (a bounded read, newest first).
    delays = db.session.execute(
        select(Alert.resolved_at, Photo.received_at).join(Photo, Photo.id == Alert.photo_id)
        .where(Alert.clinic_id == clinic_id, resolved, Alert.resolved_at.is_not(None))
        .order_by(Alert.resolved_at.desc()).limit(DECISION_SAMPLE)
    ).all()
    hours = sorted(max(0.0, (decided - received).total_seconds() / 3600) for decided, received in delays)
    return {"bands": bands, "priorities": priorities, "by_outcome": by_outcome, "hours": hours}


def clinic_users(clinic_id: int) -> list[User]:
    """The clinic's accounts, active first, by e-mail."""
    return list(db.session.execute(
        select(User).where(User.clinic_id == clinic_id).order_by(User.active.desc(), User.email)
    ).scalars())


def outbox_page(clinic_id: int, status: Optional[str], *, offset: int, limit: int
                ) -> list[tuple[OutboundMessage, Optional[str]]]:
    """The clinic's texts (with the patient's name), newest first; only those in ``status`` when given."""
    stmt = (select(OutboundMessage, Patient.name).outerjoin(Patient, Patient.id == OutboundMessage.patient_id)
            .where(OutboundMessage.clinic_id == clinic_id))
    if status:
        stmt = stmt.where(OutboundMessage.status == status)
    return list(db.session.execute(
        stmt.order_by(OutboundMessage.created_at.desc(), OutboundMessage.id.desc()).offset(offset).limit(limit)
    ).all())


def outbox_counts(clinic_id: int) -> dict[str, int]:
    """How many of the clinic's texts are in each status."""
    return dict(db.session.execute(
        select(OutboundMessage.status, func.count()).where(OutboundMessage.clinic_id == clinic_id)
        .group_by(OutboundMessage.status)
    ).all())


def inbox_page(clinic_id: int, *, limit: int = 200) -> list[tuple[InboundMessage, Optional[str]]]:
    """Texts from patients (not keywords) with the patient's name: waiting ones first, newest first."""
    return list(db.session.execute(
        select(InboundMessage, Patient.name).outerjoin(Patient, Patient.id == InboundMessage.patient_id)
        .where(InboundMessage.clinic_id == clinic_id, InboundMessage.intent == "text")
        .order_by(InboundMessage.handled_at.is_not(None), InboundMessage.received_at.desc()).limit(limit)
    ).all())
