"""Patients and their sites."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint, abort

from followup import audit
from followup.api.schemas import (
    OutlineRequestSchema,
    OutlineSchema,
    PatientCreateSchema,
    PatientSchema,
    SiteCreateSchema,
    SiteSchema,
    SiteUpdateSchema,
)
from followup.auth import api_user, roles_required
from followup.db import db
from followup.errors import ErrorSchema
from followup.intake import outlines
from followup.models import Clinic, Photo, User
from followup.models.plans import PlanItemKind
from followup.records.patients import create_patient, create_site, patient_for, site_for, site_plan

blp = Blueprint("api_patients", __name__, description="Patients and sites")


def site_body(site) -> dict:
    plan = site_plan(site)
    items = plan.items if plan else []
    return {
        "id": site.id, "patient_id": site.patient_id, "body_site": site.body_site, "diagnosis": site.diagnosis,
        "stage": site.stage, "excision_date": site.excision_date,
        "plan": {
            "protocol": plan.protocol if plan else None, "source": plan.source if plan else None,
            "visits": [i for i in items if i.kind == PlanItemKind.VISIT],
            "photos": [i for i in items if i.kind == PlanItemKind.PHOTO],
        },
        "outline": outlines.outline_body(site),
        "scar_length_mm": site.scar_length_mm,
        "clinic_mm_per_px": _clinic_scale(site),
    }


def _clinic_scale(site) -> float | None:
    baseline = db.session.get(Photo, site.outline_photo_id) if site.outline_photo_id else None
    scale = outlines.clinic_mm_per_px(site, baseline) if baseline is not None else None
    return None if scale is None else round(scale, 6)


@blp.route("/patients")
class Patients(MethodView):
    @roles_required()
    @blp.arguments(PatientCreateSchema)
    @blp.response(201, PatientSchema)
    def post(self, body):
        """Enrol a patient in the caller's clinic."""
        user = api_user()
        patient = create_patient(db.session.get(Clinic, user.clinic_id), **body)
        audit.record("create_patient", "patient", patient.id, user=user, commit=False)
        db.session.commit()
        return patient


@blp.route("/patients/<int:patient_id>")
class PatientResource(MethodView):
    @roles_required()
    @blp.response(200, PatientSchema)
    def get(self, patient_id):
        """A patient of the caller's clinic, with their sites."""
        user = api_user()
        patient = patient_for(user, patient_id)
        audit.record("read_patient", "patient", patient.id, user=user)
        return patient


@blp.route("/patients/<int:patient_id>/sites")
class Sites(MethodView):
    @roles_required()
    @blp.arguments(SiteCreateSchema)
    @blp.response(201, SiteSchema)
    def post(self, body, patient_id):
        """Add an excision site; the answer carries the follow-up plan from the clinic's protocol."""
        user = api_user()
        patient = patient_for(user, patient_id)
        derm_id = body.pop("dermatologist_id")
        dermatologist = db.session.get(User, derm_id) if derm_id else (user if user.role == "dermatologist" else None)
        if derm_id and (dermatologist is None or dermatologist.clinic_id != user.clinic_id
                        or dermatologist.role != "dermatologist"):
            abort(422, message="dermatologist_id: not a dermatologist of this clinic")
        site = create_site(patient, dermatologist=dermatologist, **body)
        audit.record("create_site", "site", site.id, user=user, commit=False)
        db.session.commit()
        return site_body(site)


@blp.route("/sites/<int:site_id>")
class SiteResource(MethodView):
    @roles_required()
    @blp.response(200, SiteSchema)
    def get(self, site_id):
        """A site with its plan."""
        user = api_user()
        site = site_for(user, site_id)
        audit.record("read_site", "site", site.id, user=user)
        return site_body(site)

    @roles_required()
    @blp.arguments(SiteUpdateSchema)
    @blp.response(200, SiteSchema)
    def patch(self, body, site_id):
        """Set or clear the scar's length measured in clinic (the scale of photos without a reference sticker)."""
        user = api_user()
        site = site_for(user, site_id)
        site.scar_length_mm = body["scar_length_mm"]
        audit.record("edit_site", "site", site.id, user=user, commit=False, scar_length_mm=site.scar_length_mm)
        db.session.commit()
        return site_body(site)


@blp.route("/sites/<int:site_id>/outline")
class SiteOutline(MethodView):
    @roles_required()
    @blp.arguments(OutlineRequestSchema)
    @blp.response(200, OutlineSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="The site has no accepted baseline photo yet, "
                                                           "or photo_id is no longer its baseline")
    def put(self, body, site_id):
        """Correct the scar's outline on the site's baseline: a drawn ``polygon`` or a tap (``point``) on it.

        The outline is stored as drawn by staff (source ``staff``); a new baseline photo gets a new proposal."""
        user = api_user()
        site = site_for(user, site_id)
        try:
            baseline = outlines.save_staff_outline(site, polygon=body.get("polygon"), point=body.get("point"),
                                                   photo_id=body.get("photo_id"))
        except outlines.OutlineError as exc:
            db.session.rollback()
            abort(exc.status, message=exc.message)
        audit.record("edit_outline", "site", site.id, user=user, commit=False, photo_id=baseline.id,
                     method="point" if "point" in body else "polygon", points=len(site.outline_polygon))
        db.session.commit()
        return outlines.outline_body(site)
