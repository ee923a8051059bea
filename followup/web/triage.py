"""The dermatologist's triage workspace: the queue, an alert's page, its actions, and the images they show.

Images of patients leave the server only through the views here (and the API): each checks the clinic,
writes an audit event and forbids caching.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Optional

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from followup import audit, queries
from followup.db import MAX_ID, db, utcnow
from followup.intake import outlines
from followup.intake.photos import baseline_of
from followup.models import Alert, Analysis, Clinic, Photo, Site, User
from followup.models.alerts import OUTCOMES, RESPONSE_TARGET, AlertPriority
from followup.records.patients import OVERLAYS, overlay_for, photo_for, site_plan
from followup.records.plans import check_plan_date
from followup.storage import image_mimetype, storage
from followup.triage import alerts
from followup.web.charts import area_unit, timeline_chart
from followup.web.common import MAX_PAGE, passive, private_image, staff_required, thumbnail
from recurrence.encoding import DIAGNOSES

bp = Blueprint("triage", __name__)

PAGE_SIZE = 50
OUTCOME_LABELS = {
    "no_change": "No change", "benign_change": "Benign change", "rephoto": "Request retake",
    "visit": "Book a visit", "biopsy": "Biopsy",
}
# Patient-facing reasons for a retake the dermatologist asks for (never a finding, never a diagnosis).
RETAKE_REASONS = {
    "blur": "the photo was not sharp enough",
    "light": "the light was not good enough",
    "distance": "the scar was too far away or not fully in the photo",
    "site": "we need the photo to show the same spot as your first photo",
    "again": alerts.DEFAULT_RETAKE_REASON,
}


@dataclass(frozen=True)
class QueueFilters:
    priority: Optional[int] = None
    member: Optional[int] = None
    diagnosis: Optional[str] = None
    claimed: str = "any"  # any | unclaimed | mine
    overdue: bool = False
    page: int = 1

    @classmethod
    def from_args(cls, args) -> "QueueFilters":
        def integer(name: str, choices=None) -> Optional[int]:
            try:
                value = int(args.get(name, ""))
            except ValueError:
                return None
            if choices is not None:
                return value if value in choices else None
            return value if 1 <= value <= MAX_ID else None

        diagnosis = args.get("diagnosis") or None
        claimed = args.get("claimed", "any")
        return cls(
            priority=integer("priority", tuple(AlertPriority)), member=integer("member"),
            diagnosis=diagnosis if diagnosis in DIAGNOSES else None,
            claimed=claimed if claimed in ("any", "unclaimed", "mine") else "any",
            overdue=args.get("overdue") == "1", page=min(max(1, integer("page") or 1), MAX_PAGE),
        )

    def args(self, **changes: Any) -> dict[str, Any]:
        """Query arguments for a link to these filters with ``changes`` (the defaults left out)."""
        values = {"priority": self.priority, "member": self.member, "diagnosis": self.diagnosis,
                  "claimed": None if self.claimed == "any" else self.claimed,
                  "overdue": "1" if self.overdue else None, "page": None if self.page == 1 else self.page}
        values.update(changes)
        return {k: v for k, v in values.items() if v is not None}


def is_overdue(alert: Alert) -> bool:
    return alert.created_at < utcnow() - RESPONSE_TARGET.get(alert.priority, timedelta(days=14))


def _queue_context():
    filters = QueueFilters.from_args(request.args)
    rows, total = queries.alert_queue(
        current_user.clinic_id, user_id=current_user.id, priority=filters.priority, member=filters.member,
        diagnosis=filters.diagnosis, claimed=filters.claimed, overdue=filters.overdue,
        offset=(filters.page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    return {"filters": filters, "rows": rows, "total": total, "page_size": PAGE_SIZE, "is_overdue": is_overdue}


def _audit_queue(context, **detail) -> None:
    # Audited after rendering: the commit expires loaded rows, and the page must not load them again.
    audit.record("view_queue", "clinic", current_user.clinic_id, count=len(context["rows"]),
                 patients=[row.patient_id for row in context["rows"]], **detail)


@bp.get("/queue")
@staff_required()
def queue():
    context = _queue_context()
    members = queries.dermatologists(current_user.clinic_id, active_only=False)
    page = render_template("triage/queue.html", members=members, diagnoses=DIAGNOSES, **context)
    _audit_queue(context)
    return page


@bp.get("/queue/rows")
@passive
@staff_required()
def queue_rows_fragment():
    """The queue's rows alone: what the page's script fetches to refresh itself."""
    context = _queue_context()
    response = render_template("triage/_queue_rows.html", **context)
    _audit_queue(context, refresh=True)
    return response, 200, {"Cache-Control": "no-store"}


def _analysis_for(photo: Photo, comparison: str) -> Optional[Analysis]:
    matches = [a for a in photo.analyses if a.comparison == comparison]
    return matches[-1] if matches else None


def _timeline(site: Site) -> list[dict[str, Any]]:
    """Every photo of the site, oldest first, with its baseline analysis' figures."""
    photos = queries.site_photos(site.id)
    analyses = {}
    for analysis in queries.analyses_of([p.id for p in photos]):
        if analysis.comparison == "baseline" or analysis.photo_id not in analyses:
            analyses[analysis.photo_id] = analysis
    timeline = []
    for photo in photos:
        analysis = analyses.get(photo.id)
        regions = (analysis.regions or []) if analysis else []
        timeline.append({
            "photo": photo, "analysis": analysis,
            "changed_area": sum(int(r.get("area_px") or 0) for r in regions) if analysis else None,
            # mm² only with a scale (older analyses and photos without one stay in pixels); a baseline's quality
            # row has no changed area in any unit
            "changed_area_mm2": (0.0 if analysis is not None and analysis.comparison == "quality" else
                                 round(sum(float(r.get("area_mm2") or 0.0) for r in regions), 2)
                                 if analysis is not None and analysis.reference_mm_per_px is not None else None),
            "change_score": analysis.change_score if analysis else None,
            "recurrence_score": analysis.recurrence_score if analysis else None,
        })
    return timeline


def describe_region(region: dict[str, Any]) -> str:
    """A changed region in words, for the clinician."""
    kind = str(region.get("kind") or "changed").replace("_", " ")
    in_mm = region.get("diameter_mm") is not None
    if in_mm:  # a scale: sizes in mm (issue 15)
        parts = [f"{kind} area {float(region['diameter_mm']):.1f} mm across "
                 f"({float(region.get('area_mm2') or 0):.1f} mm²)"]
    else:
        parts = [f"{kind} area of {int(region.get('area_px') or 0):,} px"]
    if region.get("growth_pct") is not None:
        parts.append(f"{float(region['growth_pct']):+.0f} % in size")
    if region.get("delta_e") is not None:
        parts.append(f"colour difference ΔE {float(region['delta_e']):.1f}")
    if in_mm and region.get("distance_to_scar_mm") is not None:
        distance = float(region["distance_to_scar_mm"])
        parts.append("on the scar" if distance <= 0 else f"{distance:.0f} mm from the scar")
    elif region.get("distance_to_lesion_px") is not None:
        distance = float(region["distance_to_lesion_px"])
        parts.append("on the scar" if distance <= 0 else f"{distance:.0f} px from the scar")
    if region.get("score") is not None:
        parts.append(f"score {float(region['score']):.2f}")
    if region.get("in_site") is False:
        parts.append("outside the watched site")
    return ", ".join(parts)


@bp.get("/alerts/<int:alert_id>")
@staff_required()
def alert_page(alert_id: int):
    alert = alerts.alert_for(current_user, alert_id)
    site = alert.site
    patient = site.patient
    photo = db.session.get(Photo, alert.photo_id) if alert.photo_id else None
    comparison = "previous" if request.args.get("vs") == "previous" else "baseline"
    analysis = _analysis_for(photo, comparison) if photo else None
    if analysis is None and photo is not None:
        analysis = _analysis_for(photo, "baseline") or (photo.analyses[-1] if photo.analyses else None)
        comparison = analysis.comparison if analysis else "baseline"
    reference = None
    if analysis is not None and analysis.reference_photo_id:
        reference = db.session.get(Photo, analysis.reference_photo_id)
    reference = reference or baseline_of(site.id)
    has_previous = bool(photo and _analysis_for(photo, "previous"))
    overlays = [name for name in OVERLAYS if analysis and name in (analysis.overlays or {})]
    timeline = _timeline(site)
    claimer = db.session.get(User, alert.claimed_by_id) if alert.claimed_by_id else None
    resolver = db.session.get(User, alert.resolved_by_id) if alert.resolved_by_id else None
    page = render_template(
        "triage/alert.html", alert=alert, site=site, patient=patient, photo=photo, analysis=analysis,
        comparison=comparison, has_previous=has_previous, reference=reference, overlays=overlays,
        timeline=timeline, chart=timeline_chart(timeline), area_unit=area_unit(timeline), claimer=claimer,
        resolver=resolver,
        regions=[describe_region(r) for r in (analysis.regions if analysis else [])],
        margin_mm=outlines.site_margin_mm(site),
        outcome_labels=OUTCOME_LABELS, retake_reasons=RETAKE_REASONS, overdue=is_overdue(alert),
        plan=site_plan(site), visit_default=date.today() + timedelta(days=14),
        clinic=db.session.get(Clinic, alert.clinic_id),
        dermatologists=queries.dermatologists(alert.clinic_id) if current_user.role == "admin" else [],
    )
    audit.record("view_alert", "alert", alert.id, patient_id=patient.id)
    return page


@bp.post("/alerts/<int:alert_id>/claim")
@staff_required("dermatologist")
def claim(alert_id: int):
    alert = alerts.alert_for(current_user, alert_id)
    try:
        if request.form.get("release") == "1":
            alerts.release(alert, current_user)
            flash("Released: colleagues can take this case.", "info")
        else:
            alerts.claim(alert, current_user)
    except alerts.AlertConflict as refused:  # a colleague holds it, or it is resolved
        flash(str(refused), "error")
    target = request.form.get("next") or ""
    if target.startswith("/queue") and "//" not in target:  # back to the queue with its filters
        return redirect(target, 303)
    return redirect(url_for("triage.alert_page", alert_id=alert.id), 303)


@bp.post("/alerts/<int:alert_id>/reassign")
@staff_required("admin")
def reassign(alert_id: int):
    """An admin's override of a claim: back to the queue (``to`` empty) or to a named dermatologist."""
    alert = alerts.alert_for(current_user, alert_id)
    to = None
    if value := request.form.get("to", ""):
        to = db.session.get(User, int(value)) if value.isascii() and value.isdigit() and int(value) <= MAX_ID else None
        if to is None:
            abort(400, f"User {value} doesn't exist.")
    try:
        alerts.reassign(alert, current_user, to)
    except alerts.AlertConflict as refused:
        flash(str(refused), "error")
    else:
        flash(f"Given to {to.name or to.email}." if to else "Released: back in the queue.", "info")
    return redirect(url_for("triage.alert_page", alert_id=alert.id), 303)


@bp.post("/alerts/<int:alert_id>/resolve")
@staff_required("dermatologist")
def resolve(alert_id: int):
    alert = alerts.alert_for(current_user, alert_id)
    outcome = request.form.get("outcome", "")
    note = (request.form.get("note") or "").strip()[:5000] or None
    if outcome not in OUTCOMES:
        flash("Choose an outcome.", "error")
        return redirect(url_for("triage.alert_page", alert_id=alert.id), 303)
    try:
        visit_date = date.fromisoformat(request.form.get("visit_date", ""))
    except ValueError:
        visit_date = None
    if outcome == "visit" and visit_date is not None:
        try:
            check_plan_date(visit_date, excision_date=db.session.get(Site, alert.site_id).excision_date,
                            today=utcnow().date())
        except ValueError as exc:
            flash(f"The visit was not booked: {exc}", "error")
            return redirect(url_for("triage.alert_page", alert_id=alert.id), 303)
    try:
        alerts.resolve(alert, current_user, outcome=outcome, note=note, visit_date=visit_date,
                       retake_reason=RETAKE_REASONS.get(request.form.get("retake_reason", ""), RETAKE_REASONS["again"]))
    except alerts.AlertConflict as refused:  # resolved already, or a colleague holds it
        flash(str(refused), "error")
        return redirect(url_for("triage.alert_page", alert_id=alert.id), 303)
    flash(f"Alert resolved: {OUTCOME_LABELS[outcome].lower()}.", "info")
    return redirect(url_for("triage.queue"), 303)


# Images: authorised by clinic, audited, never cached.
@bp.get("/photos/<int:photo_id>/image")
@staff_required()
def photo_image(photo_id: int):
    photo = photo_for(current_user, photo_id)
    audit.record("view_photo_image", "photo", photo.id)
    return private_image(storage().get(photo.storage_key))


@bp.get("/photos/<int:photo_id>/thumb")
@staff_required()
def photo_thumb(photo_id: int):
    photo = photo_for(current_user, photo_id)
    audit.record("view_photo_thumb", "photo", photo.id)
    return private_image(thumbnail(photo.storage_key, storage().get))


@bp.get("/analyses/<int:analysis_id>/overlay/<name>")
@staff_required()
def overlay_image(analysis_id: int, name: str):
    analysis, key = overlay_for(current_user, analysis_id, name)
    audit.record("view_overlay", "analysis", analysis.id, overlay=name)
    return private_image(storage().get(key), image_mimetype(key))
