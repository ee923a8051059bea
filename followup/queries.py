"""What staff pages (and the API's listings) read: the triage queue, patients, worklists (overdue items, visits
due, the inbox, failed texts) and the clinic's dermatologists. Reads only; the services change rows."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Optional

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.orm import aliased

from followup.db import db, utcnow
from followup.models import (
    Alert,
    Analysis,
    FollowUpPlan,
    InboundMessage,
    OutboundMessage,
    Patient,
    Photo,
    PlanItem,
    Site,
    User,
)
from followup.models.alerts import RESPONSE_TARGET, AlertStatus
from followup.models.messages import OutboxStatus
from followup.models.plans import PlanItemKind, PlanItemStatus
from followup.outreach.reminders import VISIT_EARLY_DAYS

# Most urgent first: priority 1 before 3, then the higher score, then the older alert.
QUEUE_ORDER = (Alert.priority.asc(), Alert.recurrence_score.desc(), Alert.created_at.asc(), Alert.id.asc())
#: What ``status="active"`` lists: the alerts still to decide.
ACTIVE = (AlertStatus.OPEN, AlertStatus.CLAIMED)


def _alerts_in(clinic_id: int, status: str) -> list:
    """Conditions for the clinic's alerts in ``status`` (``active``: open and claimed)."""
    return [Alert.clinic_id == clinic_id, Alert.status.in_(ACTIVE if status == "active" else (status,))]


def queue_query(clinic_id: int, status: str = AlertStatus.OPEN) -> Select:
    """The clinic's alerts in ``status`` (``active``: open and claimed), most urgent first (the API's listing)."""
    return select(Alert).where(*_alerts_in(clinic_id, status)).order_by(*QUEUE_ORDER)


def overdue_condition(now: datetime):
    """Alerts older than their priority's response target."""
    return or_(*(and_(Alert.priority == p, Alert.created_at < now - target) for p, target in RESPONSE_TARGET.items()))


def alert_queue(clinic_id: int, *, user_id: int, priority: Optional[int] = None, member: Optional[int] = None,
                diagnosis: Optional[str] = None, claimed: str = "any", overdue: bool = False, offset: int = 0,
                limit: int = 50) -> tuple[list, int]:
    """One page of the active queue (open and claimed alerts), most urgent first, with what the triage page's
    row shows (the site, the patient, the claimer), and how many alerts the filters match in all.

    Filters: ``priority``; ``member``, the site's dermatologist; ``diagnosis``; ``claimed`` ``any``,
    ``unclaimed`` or ``mine`` (claimed by ``user_id``); ``overdue``, past the priority's response target.
    """
    claimer = aliased(User)
    conditions = _alerts_in(clinic_id, "active")
    if priority:
        conditions.append(Alert.priority == priority)
    if member:
        conditions.append(Site.dermatologist_id == member)
    if diagnosis:
        conditions.append(Site.diagnosis == diagnosis)
    if claimed == "unclaimed":
        conditions.append(Alert.status == AlertStatus.OPEN)
    elif claimed == "mine":
        conditions.append(Alert.claimed_by_id == user_id)
    if overdue:
        conditions.append(overdue_condition(utcnow()))
    count_stmt = select(func.count(Alert.id)).where(*conditions)
    page_stmt = select(Alert.id).where(*conditions)
    if member or diagnosis:
        count_stmt = count_stmt.join(Site, Site.id == Alert.site_id)
        page_stmt = page_stmt.join(Site, Site.id == Alert.site_id)
    total = db.session.execute(count_stmt).scalar_one()
    # First the page's ids from the alert table alone (a narrow sort over the queue index), then the
    # joins for those rows only: joining before the sort would touch every open alert's site and patient.
    page_ids = page_stmt.order_by(*QUEUE_ORDER).offset(offset).limit(limit)
    rows = db.session.execute(
        select(Alert, Site.body_site, Site.diagnosis, Site.excision_date, Patient.id.label("patient_id"), Patient.name,
               claimer.name, claimer.email)
        .join(Site, Site.id == Alert.site_id)
        .join(Patient, Patient.id == Site.patient_id)
        .outerjoin(claimer, claimer.id == Alert.claimed_by_id)
        .where(Alert.id.in_(page_ids.scalar_subquery()))
        .order_by(*QUEUE_ORDER)
    ).all()
    return rows, total


def site_photos(site_id: int, *, newest_first: bool = False, limit: Optional[int] = None) -> list[Photo]:
    """The site's photos, oldest first (``newest_first``: the reverse); at most ``limit``."""
    order = (Photo.received_at.desc(),) if newest_first else (Photo.received_at, Photo.id)
    return list(db.session.execute(
        select(Photo).where(Photo.site_id == site_id).order_by(*order).limit(limit)
    ).scalars())


def analyses_of(photo_ids: list[int]) -> list[Analysis]:
    """The analyses of these photos, oldest first."""
    if not photo_ids:
        return []
    return list(db.session.execute(
        select(Analysis).where(Analysis.photo_id.in_(photo_ids)).order_by(Analysis.id)
    ).scalars())


def site_alerts(site_id: int, *, limit: int = 10) -> list[Alert]:
    """The site's latest alerts, newest first."""
    return list(db.session.execute(
        select(Alert).where(Alert.site_id == site_id).order_by(Alert.created_at.desc()).limit(limit)
    ).scalars())


def patient_messages(patient_id: int, *, limit: int = 20) -> tuple[list[OutboundMessage], list[InboundMessage]]:
    """The patient's latest texts, sent and received, newest first."""
    outbound = db.session.execute(
        select(OutboundMessage).where(OutboundMessage.patient_id == patient_id)
        .order_by(OutboundMessage.created_at.desc()).limit(limit)
    ).scalars().all()
    inbound = db.session.execute(
        select(InboundMessage).where(InboundMessage.patient_id == patient_id)
        .order_by(InboundMessage.received_at.desc()).limit(limit)
    ).scalars().all()
    return list(outbound), list(inbound)


def patients_page(clinic_id: int, search: str = "", *, offset: int, limit: int) -> list[Patient]:
    """The clinic's patients by name; only those whose name contains ``search`` (any case) when given."""
    stmt = select(Patient).where(Patient.clinic_id == clinic_id)
    if search:
        stmt = stmt.where(func.lower(Patient.name).contains(search.lower(), autoescape=True))
    return list(db.session.execute(stmt.order_by(Patient.name, Patient.id).offset(offset).limit(limit)).scalars())


def _pending_items(clinic_id: int):
    """Pending plan items of the clinic's open sites (with their site and patient)."""
    return (select(PlanItem, Site, Patient)
            .join(FollowUpPlan, FollowUpPlan.id == PlanItem.plan_id)
            .join(Site, Site.id == FollowUpPlan.site_id)
            .join(Patient, Patient.id == Site.patient_id)
            .where(Patient.clinic_id == clinic_id, PlanItem.status == PlanItemStatus.PENDING, Site.closed_at.is_(None)))


def visits_due(clinic_id: int, today: date, *, within_days: int = VISIT_EARLY_DAYS, include_overdue: bool = True,
               limit: Optional[int] = None) -> list[dict[str, Any]]:
    """Clinic visits due within ``within_days`` (and, with ``include_overdue``, those overdue), oldest first;
    at most ``limit``."""
    stmt = _pending_items(clinic_id).where(PlanItem.kind == PlanItemKind.VISIT,
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
        .where(OutboundMessage.clinic_id == clinic_id,
               OutboundMessage.status.in_((OutboxStatus.FAILED, OutboxStatus.UNKNOWN)))
        .order_by(OutboundMessage.updated_at.desc(), OutboundMessage.id.desc()).limit(limit)
    ).scalars())


def dermatologists(clinic_id: int, *, active_only: bool = True) -> list[User]:
    """The clinic's active dermatologists (``active_only=False``: all of them), by name."""
    stmt = select(User).where(User.clinic_id == clinic_id, User.role == "dermatologist")
    if active_only:
        stmt = stmt.where(User.active)
    return list(db.session.execute(stmt.order_by(User.name, User.email)).scalars())


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
    resolved = Alert.status == AlertStatus.RESOLVED
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


def clinic_users(clinic_id: int, *, by_name: bool = False) -> list[User]:
    """The clinic's accounts, active first, by e-mail (``by_name``: all by name, then e-mail)."""
    order = (User.name, User.email) if by_name else (User.active.desc(), User.email)
    return list(db.session.execute(select(User).where(User.clinic_id == clinic_id).order_by(*order)).scalars())


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
