"""Enrolling patients and sites, and the clinic-scoped lookups every view goes through."""
from __future__ import annotations

from datetime import date
from typing import Optional

import phonenumbers
from flask import abort
from sqlalchemy import select

from followup.db import MAX_ID, db, utcnow
from followup.models import Analysis, Clinic, FollowUpPlan, Patient, Photo, PlanItem, Site, User
from followup.records.plans import plan_items, protocol_name, resolve_protocol


def normalise_e164(phone: str) -> str:
    """The number in E.164 form; ValueError unless it is a valid international number starting with +."""
    if not isinstance(phone, str) or not phone.startswith("+"):
        raise ValueError("must be in E.164 form, e.g. +447700900123")
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"is not a phone number ({exc})") from None
    # "Possible" (right length for the country) rather than "valid": fictional test ranges must pass.
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("is not a possible phone number for its country code")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def create_patient(clinic: Clinic, *, name: str, phone: str, date_of_birth: Optional[date] = None,
                   sms_consent: bool = False, timezone: Optional[str] = None) -> Patient:
    patient = Patient(clinic_id=clinic.id, name=name.strip(), phone=normalise_e164(phone),
                      date_of_birth=date_of_birth, sms_consent=sms_consent,
                      timezone=timezone or clinic.timezone)
    db.session.add(patient)
    db.session.flush()
    return patient


#: Earliest excision date accepted: anything before is a typo (and would make a plan of centuries).
EARLIEST_EXCISION = date(1900, 1, 1)


#: The scar lengths a clinic may enter (mm): a ruler's reading of a scar, not a typing slip.
SCAR_LENGTH_MM = (1.0, 500.0)
SCAR_LENGTH_MESSAGE = (f"The scar's length must be between {SCAR_LENGTH_MM[0]:g} and {SCAR_LENGTH_MM[1]:g} mm; "
                       "measure it end to end with a ruler.")


def check_scar_length(value: float) -> None:
    if not SCAR_LENGTH_MM[0] <= value <= SCAR_LENGTH_MM[1] or value != value:
        raise ValueError(SCAR_LENGTH_MESSAGE)


def check_excision_date(value: date) -> None:
    """Raise ValueError, in words for the form, unless `value` is a plausible excision date.

    A future date (a typo of 2062 for 2026) would silently give the patient no follow-up at all.
    """
    if value > utcnow().date():
        raise ValueError("The excision date cannot be in the future.")
    if value < EARLIEST_EXCISION:
        raise ValueError(f"The excision date cannot be before {EARLIEST_EXCISION.year}.")


def create_site(patient: Patient, *, body_site: str, diagnosis: str, excision_date: date,
                stage: Optional[str] = None, dermatologist: Optional[User] = None,
                today: Optional[date] = None, scar_length_mm: Optional[float] = None) -> Site:
    """A site and its follow-up plan from the clinic's protocol for that diagnosis and stage. ``scar_length_mm``
    (measured in clinic; checked with :func:`check_scar_length`) gives photos without a sticker a scale."""
    clinic = db.session.get(Clinic, patient.clinic_id)
    if scar_length_mm is not None:
        check_scar_length(scar_length_mm)
    site = Site(patient_id=patient.id, body_site=body_site.strip(), diagnosis=diagnosis, stage=stage,
                excision_date=excision_date, dermatologist_id=dermatologist.id if dermatologist else None,
                scar_length_mm=scar_length_mm)
    db.session.add(site)
    db.session.flush()
    protocol = resolve_protocol(protocol_name(diagnosis, stage), clinic.protocol_overrides)
    plan = FollowUpPlan(site_id=site.id, protocol=protocol.name, source=protocol.source)
    today = today or utcnow().date()
    plan.items = [PlanItem(kind=kind, due_date=due) for kind, due in plan_items(protocol, excision_date, today=today)]
    db.session.add(plan)
    db.session.flush()
    return site


def site_plan(site: Site) -> Optional[FollowUpPlan]:
    return db.session.execute(select(FollowUpPlan).where(FollowUpPlan.site_id == site.id)).scalar_one_or_none()


# Lookups scoped to the caller's clinic. Another clinic's record answers 404, like a missing one,
# so ids reveal nothing about other clinics.
def patient_for(user: User, patient_id: int) -> Patient:
    patient = db.session.get(Patient, patient_id)
    if patient is None or patient.clinic_id != user.clinic_id:
        abort(404, f"Patient {patient_id} doesn't exist.")
    return patient


def site_for(user: User, site_id: int) -> Site:
    site = db.session.get(Site, site_id)
    if site is None or site.patient.clinic_id != user.clinic_id:
        abort(404, f"Site {site_id} doesn't exist.")
    return site


def photo_for(user: User, photo_id: int) -> Photo:
    photo = db.session.get(Photo, photo_id)
    if photo is None or photo.site.patient.clinic_id != user.clinic_id:
        abort(404, f"Photo {photo_id} doesn't exist.")
    return photo


#: The images an analysis leaves for people to read, in the order the triage page shows them (its stored copy of
#: the reference photo, ``baseline``, is that photo and is served as it).
OVERLAYS = ("aligned", "outline", "heatmap", "saliency")


def overlay_for(user: User, analysis_id: int, name: str) -> tuple[Analysis, str]:
    """An analysis of the user's clinic and the storage key of its overlay ``name``; 404 otherwise."""
    analysis = db.session.get(Analysis, analysis_id) if 0 < analysis_id <= MAX_ID else None
    if analysis is None:
        abort(404, f"Analysis {analysis_id} doesn't exist.")
    photo_for(user, analysis.photo_id)  # 404 for another clinic's analysis
    key = (analysis.overlays or {}).get(name)
    if name not in OVERLAYS or not key:
        abort(404, f"Analysis {analysis_id} has no {name} image.")
    return analysis, key
