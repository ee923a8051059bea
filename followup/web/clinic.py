"""Clinic pages for staff: patients and their sites and plans, messages, inbox, overdue patients,
model performance, and (admins) the clinic's users."""
from __future__ import annotations

import json
from datetime import date
from typing import Optional

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from followup import audit, queries
from followup.api.schemas import PatientCreateSchema, SiteCreateSchema, SiteUpdateSchema
from followup.db import db, utcnow
from followup.intake import outlines
from followup.intake.cleaning import IntakeError
from followup.intake.photos import baseline_of, receive_photo
from followup.models import Clinic, InboundMessage, PlanItem, Site
from followup.models.photos import MODALITIES, PhotoKind
from followup.models.plans import ITEM_KINDS, ITEM_STATUSES, PlanItemStatus
from followup.outreach import reminders
from followup.queries import ACTIONABLE
from followup.records import links
from followup.records.patients import create_patient, create_site, patient_for, site_for, site_plan
from followup.records.plans import check_plan_date
from followup.web.charts import calibration_chart, decision_time_chart, outline_overlay, ppv_chart
from followup.web.common import MAX_PAGE, load_form, staff_required
from recurrence.encoding import DIAGNOSES

bp = Blueprint("clinic", __name__)

PAGE_SIZE = 50
# Widest a baseline photo is shown for outlining (CSS pixels); a click's position is scaled from it.
OUTLINE_SHOWN_WIDTH = 640


def _page() -> int:
    try:
        return min(max(1, int(request.args.get("page", 1))), MAX_PAGE)
    except ValueError:
        return 1


def _dermatologists():
    return queries.dermatologists(current_user.clinic_id)


def _dermatologist(chosen: Optional[str]):
    """The dermatologist chosen in a form: one of the clinic's active ones, else none."""
    return next((d for d in _dermatologists() if str(d.id) == chosen), None) if chosen else None


def _site_fields(form) -> tuple[dict, dict[str, str]]:
    """A form's site fields loaded by `SiteCreateSchema`, and its messages by field (the dermatologist is chosen
    from a list: see `_dermatologist`)."""
    values = {name: form.get(name, "") for name in ("body_site", "diagnosis", "stage", "excision_date")}
    values["scar_length_mm"] = form.get("scar_length_mm", "").strip().replace(",", ".")  # a decimal comma is fine
    fields, errors = load_form(SiteCreateSchema, values)
    fields.pop("dermatologist_id", None)
    return fields, errors


@bp.route("/patients", methods=["GET", "POST"])
@staff_required()
def patients():
    """The clinic's patients by name; the search is a POST so a name never lands in a URL or a log."""
    page = _page()
    search = (request.form.get("q") or "").strip() if request.method == "POST" else ""
    rows = queries.patients_page(current_user.clinic_id, search, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1)
    html = render_template("clinic/patients.html", patients=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE,
                           page=page, search=search)
    audit.record("list_patients", "clinic", current_user.clinic_id, searched=bool(search),
                 patients=[p.id for p in rows[:PAGE_SIZE]])
    return html


def _plan_date(value: str, site: Site, errors: list[str]):
    """A due date typed in the plan editor, or None with the reason added to ``errors``."""
    try:
        due = date.fromisoformat(value)
    except ValueError:
        errors.append(f"{value!r} is not a date (YYYY-MM-DD).")
        return None
    try:
        check_plan_date(due, excision_date=site.excision_date, today=utcnow().date())
    except ValueError as exc:
        errors.append(f"{value}: {exc}")
        return None
    return due


@bp.route("/patients/new", methods=["GET", "POST"])
@staff_required()
def enrol():
    """A new patient with their first site and its baseline photo."""
    form, errors = request.form, {}
    if request.method == "POST":
        patient_fields, errors = load_form(PatientCreateSchema, {
            **{name: form.get(name, "") for name in ("name", "phone", "date_of_birth")},
            "sms_consent": form.get("sms_consent") == "on"})
        site_fields, site_errors = _site_fields(form)
        errors.update(site_errors)
        derm = _dermatologist(form.get("dermatologist"))
        upload = request.files.get("baseline")
        data = upload.read() if upload else b""
        if not data:
            errors["baseline"] = "Add the baseline photo of the scar."
        if not errors:
            clinic = db.session.get(Clinic, current_user.clinic_id)
            patient = create_patient(clinic, **patient_fields)
            site = create_site(patient, dermatologist=derm, **site_fields)
            db.session.commit()
            try:
                photo = receive_photo(site, data, kind=PhotoKind.BASELINE, user=current_user)
            except IntakeError as exc:
                flash(f"Patient enrolled, but the baseline photo was not accepted: {exc.message} "
                      "Upload it again from the patient's page.", "error")
            else:
                audit.record("upload_photo", "photo", photo.id, commit=False)
                flash("Patient enrolled. Check the scar's outline on the baseline photo below.", "info")
            audit.record("enrol_patient", "patient", patient.id)
            return redirect(url_for("clinic.patient_page", patient_id=patient.id, _anchor=f"outline-{site.id}"), 303)
        db.session.rollback()
    return render_template("clinic/enrol.html", form=form, errors=errors, diagnoses=DIAGNOSES,
                           dermatologists=_dermatologists()), 400 if errors else 200


@bp.get("/patients/<int:patient_id>")
@staff_required()
def patient_page(patient_id: int):
    patient = patient_for(current_user, patient_id)
    sites = []
    for site in patient.sites:
        sites.append({"site": site, "plan": site_plan(site), "photos": queries.site_photos(site.id, newest_first=True,
                                                                                          limit=12),
                      "alerts": queries.site_alerts(site.id, limit=10), "outline": _outline_view(site)})
    outbound, inbound = queries.patient_messages(patient.id, limit=20)
    page = render_template("clinic/patient.html", patient=patient, sites=sites, outbound=outbound,
                           inbound=inbound, hide_links=links.hide_links, diagnoses=DIAGNOSES,
                           dermatologists=_dermatologists(), today=date.today())
    audit.record("view_patient", "patient", patient.id)
    return page


def _outline_view(site: Site) -> dict:
    """The site's baseline with its outline and watched margin drawn over it, as the patient page shows it."""
    view = outlines.outline_view(site)
    baseline = view["baseline"]
    if baseline is not None:
        shown = min(baseline.width, OUTLINE_SHOWN_WIDTH)
        view["shown"] = (shown, round(baseline.height * shown / baseline.width))
        view["svg"] = outline_overlay(width=baseline.width, height=baseline.height, polygon=view["polygon"],
                                      margin_px=view["margin_px"], shown_width=shown, key=str(site.id))
    return view


@bp.post("/sites/<int:site_id>/outline")
@staff_required()
def save_outline(site_id: int):
    """Staff correct the scar's outline: a click on the photo (``tap.x``/``tap.y`` of the image button, scaled
    from the shown size) or a polygon drawn on it (``polygon``, JSON, photo pixels)."""
    site = site_for(current_user, site_id)
    back = redirect(url_for("clinic.patient_page", patient_id=site.patient_id, _anchor=f"outline-{site.id}"), 303)
    form = request.form
    try:
        photo_id = int(form["photo_id"]) if form.get("photo_id") else None
        if "tap.x" in form:
            x, y, shown = float(form["tap.x"]), float(form["tap.y"]), float(form.get("shown_width") or 0)
            if x == 0 and y == 0:  # an image button pressed from the keyboard sends no position
                flash("Click on the scar in the photo to outline it.", "error")
                return back
            baseline = baseline_of(site.id)
            scale = baseline.width / shown if baseline is not None and shown > 0 else 1.0
            kwargs = {"point": (x * scale, y * scale)}
        else:
            kwargs = {"polygon": json.loads(form.get("polygon") or "null")}
            if kwargs["polygon"] is None:
                flash("Click around the scar to draw its outline, then save it.", "error")
                return back
    except (ValueError, KeyError):
        flash("The outline was not saved: the form was incomplete; try again.", "error")
        return back
    try:
        baseline = outlines.save_staff_outline(site, photo_id=photo_id, **kwargs)
    except outlines.OutlineError as exc:
        db.session.rollback()
        flash(f"The outline was not saved: {exc.message}", "error")
        return back
    audit.record("edit_outline", "site", site.id, commit=False, photo_id=baseline.id,
                 method="point" if "point" in kwargs else "polygon", points=len(site.outline_polygon))
    db.session.commit()
    flash("Outline saved.", "info")
    return back


@bp.post("/patients/<int:patient_id>/sites")
@staff_required()
def add_site(patient_id: int):
    patient = patient_for(current_user, patient_id)
    fields, errors = _site_fields(request.form)
    if errors:
        flash(f"The site was not added: {' '.join(errors.values())}", "error")
        return redirect(url_for("clinic.patient_page", patient_id=patient.id), 303)
    site = create_site(patient, dermatologist=_dermatologist(request.form.get("dermatologist")), **fields)
    audit.record("create_site", "site", site.id, commit=False)
    db.session.commit()
    upload = request.files.get("baseline")
    data = upload.read() if upload else b""
    if data:
        try:
            photo = receive_photo(site, data, kind=PhotoKind.BASELINE, user=current_user)
            audit.record("upload_photo", "photo", photo.id)
        except IntakeError as exc:
            flash(f"Site added, but the baseline photo was not accepted: {exc.message}", "error")
            return redirect(url_for("clinic.patient_page", patient_id=patient.id), 303)
    flash("Site added.", "info")
    return redirect(url_for("clinic.patient_page", patient_id=patient.id), 303)


@bp.post("/sites/<int:site_id>/scar-length")
@staff_required()
def save_scar_length(site_id: int):
    """The scar's length measured in clinic (mm; empty clears it): the scale of photos without a sticker."""
    site = site_for(current_user, site_id)
    back = redirect(url_for("clinic.patient_page", patient_id=site.patient_id, _anchor=f"outline-{site.id}"), 303)
    typed = request.form.get("scar_length_mm", "").strip().replace(",", ".")  # a decimal comma is fine
    fields, errors = load_form(SiteUpdateSchema, {"scar_length_mm": typed}) if typed else ({}, {})
    if errors:
        flash(f"The scar's length was not saved: {errors['scar_length_mm']}", "error")
        return back
    length = fields.get("scar_length_mm")
    site.scar_length_mm = length
    audit.record("edit_site", "site", site.id, commit=False, scar_length_mm=length)
    db.session.commit()
    flash("Scar length saved." if length is not None else "Scar length cleared.", "info")
    return back


@bp.post("/sites/<int:site_id>/photos")
@staff_required()
def upload_photo(site_id: int):
    site = site_for(current_user, site_id)
    kind = request.form.get("kind") if request.form.get("kind") in tuple(PhotoKind) else PhotoKind.BASELINE
    modality = request.form.get("modality") if request.form.get("modality") in MODALITIES else None
    upload = request.files.get("photo")
    try:
        photo = receive_photo(site, upload.read() if upload else b"", kind=kind, user=current_user,
                              modality=modality)
    except IntakeError as exc:
        flash(f"The photo was not accepted: {exc.message}", "error")
    else:
        audit.record("upload_photo", "photo", photo.id)
        flash("Photo received.", "info")
    return redirect(url_for("clinic.patient_page", patient_id=site.patient_id), 303)


@bp.post("/sites/<int:site_id>/plan")
@staff_required()
def edit_plan(site_id: int):
    """Change due dates and states of plan items, or add one; a refused date saves nothing (400, with why)."""
    site = site_for(current_user, site_id)
    plan = site_plan(site)
    if plan is None:
        abort(404, f"Site {site_id} has no plan.")
    errors: list[str] = []
    changed = 0
    for item in plan.items:
        status = request.form.get(f"status-{item.id}")
        due = request.form.get(f"due-{item.id}")
        status_set = status in ITEM_STATUSES and status != item.status
        if status_set:
            item.status = status
            item.completed_at = utcnow() if status == PlanItemStatus.DONE else None
            changed += 1
        if due and (new_due := _plan_date(due, site, errors)) and new_due != item.due_date:
            item.due_date = new_due
            reminders.reschedule_item(item, reopen=not status_set)  # a missed item re-dated is due again
            changed += 1
    new_kind, new_due = request.form.get("new_kind"), request.form.get("new_due")
    if new_kind in ITEM_KINDS and new_due and (due_date := _plan_date(new_due, site, errors)):
        db.session.add(PlanItem(plan_id=plan.id, kind=new_kind, due_date=due_date))
        changed += 1
    if errors:
        db.session.rollback()
        for error in errors:
            flash(f"Plan not saved: {error}", "error")
        return patient_page(site.patient_id), 400
    audit.record("edit_plan", "site", site.id, commit=False, changes=changed)
    db.session.commit()
    flash(f"Plan saved ({changed} change{'s' if changed != 1 else ''}).", "info")
    return redirect(url_for("clinic.patient_page", patient_id=site.patient_id, _anchor=f"site-{site.id}"), 303)


@bp.post("/sites/<int:site_id>/link")
@staff_required()
def new_link(site_id: int):
    """A fresh upload link for the patient (older ones are revoked), shown once to read out or copy."""
    site = site_for(current_user, site_id)
    token, link = links.create_link(site)
    audit.record("create_upload_link", "site", site.id, commit=False, link_id=link.id)
    db.session.commit()
    response = render_template("clinic/link.html", site=site, url=links.link_url(token), link=link)
    return response, 200, {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@bp.get("/messages")
@staff_required()
def messages():
    page = _page()
    status = request.args.get("status") or None
    rows = queries.outbox_page(current_user.clinic_id, status, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1)
    counts = queries.outbox_counts(current_user.clinic_id)
    html = render_template("clinic/messages.html", rows=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE, page=page,
                           status=status, counts=counts, hide_links=links.hide_links)
    audit.record("view_messages", "clinic", current_user.clinic_id,
                 patients=[m.patient_id for m, _name in rows[:PAGE_SIZE] if m.patient_id])
    return html


@bp.get("/inbox")
@staff_required()
def inbox():
    rows = queries.inbox_page(current_user.clinic_id)
    html = render_template("clinic/inbox.html", rows=rows)
    audit.record("view_inbox", "clinic", current_user.clinic_id,
                 patients=[m.patient_id for m, _name in rows if m.patient_id])
    return html


@bp.post("/inbox/<int:message_id>/handled")
@staff_required()
def mark_handled(message_id: int):
    message = db.session.get(InboundMessage, message_id)
    if message is None or message.clinic_id != current_user.clinic_id:
        abort(404, f"Message {message_id} doesn't exist.")
    message.handled_at = None if request.form.get("undo") == "1" else utcnow()
    audit.record("handle_message", "inbound_message", message.id, commit=False)
    db.session.commit()
    return redirect(url_for("clinic.inbox"), 303)


@bp.get("/overdue")
@staff_required()
def overdue():
    """Patients with a photo or visit past its due date and still pending, longest overdue first."""
    today, page = date.today(), _page()
    found = queries.overdue_items(current_user.clinic_id, today, offset=(page - 1) * PAGE_SIZE,
                                    limit=PAGE_SIZE + 1)
    rows = found[:PAGE_SIZE]
    visits = queries.visits_due(current_user.clinic_id, today, include_overdue=False, limit=PAGE_SIZE + 1)
    html = render_template("clinic/overdue.html", rows=rows, more=len(found) > PAGE_SIZE, page=page, today=today,
                           visits=visits[:PAGE_SIZE], more_visits=len(visits) > PAGE_SIZE)
    audit.record("view_overdue", "clinic", current_user.clinic_id, count=len(rows),
                 patients=[patient.id for _item, _site, patient, _last in rows]
                 + [v["patient"].id for v in visits[:PAGE_SIZE]])
    return html


@bp.get("/performance")
@staff_required()
def performance():
    """Resolved alerts' outcomes against their scores: how often a flag pointed at something real."""
    stats = queries.alert_performance(current_user.clinic_id)
    bands, hours = stats["bands"], stats["hours"]
    charts = {
        "ppv": ppv_chart(bands),
        "calibration": calibration_chart([{"score": b["score"], "real": b["real"] / b["n"] if b["n"] else 0.0,
                                           "n": b["n"]} for b in bands]),
        "decision": decision_time_chart(hours),
    }
    return render_template("clinic/performance.html", bands=bands, priorities=stats["priorities"],
                           by_outcome=stats["by_outcome"], total=sum(b["n"] for b in bands),
                           real=sum(b["real"] for b in bands), actionable=ACTIONABLE, charts=charts,
                           decisions=len(hours), median_hours=hours[len(hours) // 2] if hours else None)
