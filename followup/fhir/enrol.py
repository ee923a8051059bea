"""Enrolment from the record: a transaction Bundle of a Patient and the Conditions (each with at most one
Procedure) becomes a patient, sites and plans — through the API's own schemas and service functions, all or
nothing, and idempotently (the Patient is matched on its identifier, a site on what it says)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Optional

import marshmallow as ma
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from followup import audit
from followup.api.schemas import PatientCreateSchema, SiteCreateSchema
from followup.db import db
from followup.fhir import codes
from followup.fhir.errors import FhirError
from followup.models import Clinic, Patient, Site, User
from followup.records.body_sites import SITE_OF_CODE
from followup.records.patients import create_patient, create_site

#: Largest enrolment accepted: a patient's enrolment is a few resources; anything larger is a mistake or abuse.
MAX_BUNDLE_BYTES = 256 * 1024
MAX_ENTRIES = 20
_TYPES = ("Patient", "Condition", "Procedure")


def _invalid(message: str, expression: str, *, status: int = 422, code: str = "invalid") -> FhirError:
    return FhirError(status, message, code=code, expression=expression)


def _path(loc: tuple) -> str:
    out = "Bundle"
    for part in loc:
        if part != "root":  # pydantic's name for a model's own value, no FHIR element
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@dataclass
class _Site:
    at: str  # the Condition's path, for errors
    fields: dict[str, Any]
    procedure_at: Optional[str] = None


@dataclass
class _Enrolment:
    system: str
    value: str
    patient: dict[str, Any]
    sites: list[_Site] = field(default_factory=list)
    order: list[tuple[str, Any]] = field(default_factory=list)  # (type, its site or None), entry by entry


def parse(raw: bytes) -> _Enrolment:
    """The Bundle checked down to the last element; FhirError naming the element that fails."""
    if len(raw) > MAX_BUNDLE_BYTES:
        raise _invalid(f"An enrolment Bundle may be at most {MAX_BUNDLE_BYTES // 1024} KiB.", "Bundle",
                       status=413, code="too-costly")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than any Bundle
        raise _invalid("The body is not JSON.", "Bundle", status=400, code="structure") from None
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise _invalid("Send a Bundle (resourceType Bundle) of type transaction.", "Bundle.resourceType", status=400)
    if body.get("type") != "transaction":
        raise _invalid("Only a transaction Bundle is accepted here.", "Bundle.type", status=400)
    entries = body.get("entry")
    if not isinstance(entries, list) or not entries:
        raise _invalid("The Bundle has no entries.", "Bundle.entry")
    if len(entries) > MAX_ENTRIES:
        raise _invalid(f"An enrolment Bundle may hold at most {MAX_ENTRIES} entries.", "Bundle.entry",
                       status=413, code="too-costly")
    for i, entry in enumerate(entries):
        # Before the model: fhir.resources fails on a type it does not know with a bare KeyError.
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") not in _TYPES:
            raise _invalid(f"{resource.get('resourceType') or 'A resource without resourceType'} cannot be enrolled: "
                           "send Patient, Condition and Procedure.", f"Bundle.entry[{i}].resource",
                           code="not-supported")
    try:
        Bundle.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _invalid(f"{error['msg']}", _path(error["loc"]), status=400, code="structure") from None
    return _read(entries)


def _read(entries: list[dict]) -> _Enrolment:
    by_url: dict[str, tuple[str, str]] = {}  # fullUrl → (type, path)
    for i, entry in enumerate(entries):
        at = f"Bundle.entry[{i}]"
        kind = (entry.get("resource") or {}).get("resourceType")
        if kind is None:
            raise _invalid("Each entry holds a resource.", f"{at}.resource", code="required")
        request = entry.get("request") or {}
        if request.get("method") != "POST" or request.get("url") != kind:
            raise _invalid(f"Each entry is a create: request.method POST, request.url {kind}.", f"{at}.request")
        if not entry.get("fullUrl"):
            raise _invalid("Each entry needs a fullUrl (urn:uuid:…) that the others refer to.", f"{at}.fullUrl")
        if entry["fullUrl"] in by_url:
            raise _invalid("Two entries have the same fullUrl.", f"{at}.fullUrl")
        by_url[entry["fullUrl"]] = (kind, at)
    patients = [(e, at) for e, (kind, at) in zip(entries, by_url.values()) if kind == "Patient"]
    if len(patients) != 1:
        raise _invalid("An enrolment has exactly one Patient.", "Bundle.entry")
    enrolment = _patient(*patients[0])
    patient_url = patients[0][0]["fullUrl"]
    sites: dict[str, _Site] = {}
    for entry, (kind, at) in zip(entries, by_url.values()):
        if kind == "Condition":
            _subject(entry["resource"], patient_url, f"{at}.resource")
            sites[entry["fullUrl"]] = _condition(entry["resource"], f"{at}.resource")
    if not sites:
        raise _invalid("An enrolment has at least one Condition (the excised cancer).", "Bundle.entry")
    for entry, (kind, at) in zip(entries, by_url.values()):
        site = sites.get(entry["fullUrl"])
        if kind == "Procedure":
            _subject(entry["resource"], patient_url, f"{at}.resource")
            site = _procedure(entry["resource"], f"{at}.resource", sites)
        enrolment.order.append((kind, site))
    for site in sites.values():
        date_at = site.procedure_at or f"{site.at}.abatementDateTime"
        if "excision_date" not in site.fields:
            raise _invalid("The excision date is needed: Condition.abatementDateTime or a Procedure's "
                           "performedDateTime.", date_at, code="required")
        site.fields = _check(SiteCreateSchema, site.fields, {"body_site": f"{site.at}.bodySite[0]",
                                                             "diagnosis": f"{site.at}.code",
                                               "stage": f"{site.at}.stage[0].summary.text",
                                               "excision_date": date_at})
        site.fields.pop("dermatologist_id")  # the enrolling dermatologist, as in the API
    enrolment.sites = list(sites.values())
    return enrolment


def _check(schema: type[ma.Schema], values: dict, paths: dict[str, str]) -> dict:
    """The API's own validation of the same fields (what it loads), its messages pointed at the FHIR elements."""
    try:
        return schema().load({k: v.isoformat() if isinstance(v, date) else v for k, v in values.items()})
    except ma.ValidationError as exc:
        name, messages = next(iter(exc.messages.items()))
        raise _invalid(" ".join(map(str, messages)), paths[name]) from None


def _subject(resource: dict, patient_url: str, at: str) -> None:
    element = "subject"
    reference = (resource.get(element) or {}).get("reference")
    if reference != patient_url:
        raise _invalid(f"{element}.reference must refer to the Bundle's Patient ({patient_url}); "
                       f"{reference!r} does not resolve.", f"{at}.{element}.reference", code="not-found")


def _patient(entry: dict, at: str) -> _Enrolment:
    resource, at = entry["resource"], f"{at}.resource"
    identifier = next((i for i in resource.get("identifier") or [] if i.get("system") and i.get("value")), None)
    if identifier is None:
        raise _invalid("The Patient needs an identifier with a system and a value (the record's number), so that "
                       "sending it again finds the same patient.", f"{at}.identifier", code="required")
    if len(identifier["system"]) > 200 or len(identifier["value"]) > 100:
        raise _invalid("The identifier is too long (system 200, value 100 characters).", f"{at}.identifier")
    names = resource.get("name") or []
    name = names[0] if names else {}
    text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
    phones = [(j, t) for j, t in enumerate(resource.get("telecom") or []) if t.get("system") == "phone"]
    if not phones:
        raise _invalid("The Patient needs a phone (telecom with system phone) for the follow-up texts.",
                       f"{at}.telecom", code="required")
    j, phone = phones[0]
    values = {"name": text, "phone": phone.get("value", ""), "sms_consent": False,
              "date_of_birth": resource.get("birthDate")}
    values = _check(PatientCreateSchema, values, {"name": f"{at}.name[0]", "phone": f"{at}.telecom[{j}].value",
                                                  "date_of_birth": f"{at}.birthDate"})
    return _Enrolment(identifier["system"], identifier["value"], values)


def _full_date(value: Optional[str], at: str) -> date:
    try:
        return date.fromisoformat((value or "")[:10])
    except ValueError:
        raise _invalid("A full date is needed (YYYY-MM-DD).", at) from None


def _coded(concept: dict, at: str, known: dict[str, Any], what: str, *, unsupported: bool) -> Optional[Any]:
    """Our value for a CodeableConcept's SNOMED CT coding; None without one."""
    for j, coding in enumerate(concept.get("coding") or []):
        if coding.get("system") == codes.SNOMED:
            if coding.get("code") in known:
                return known[coding["code"]]
            raise _invalid(f"SNOMED CT {coding.get('code')} is not a {what} this service follows up"
                           if unsupported else f"SNOMED CT {coding.get('code')} is not a {what} this service knows; "
                           "send the site as text instead.", f"{at}.coding[{j}].code",
                           code="not-supported" if unsupported else "code-invalid")
    return None


def _condition(resource: dict, at: str) -> _Site:
    diagnosis = _coded(resource.get("code") or {}, f"{at}.code", codes.DIAGNOSIS_OF_CODE,
                       "diagnosis", unsupported=True)
    if diagnosis is None:
        raise _invalid("Condition.code needs a SNOMED CT coding: " + ", ".join(
            f"{code} ({name})" for code, name in codes.DIAGNOSES.values()), f"{at}.code", code="code-invalid")
    sites = resource.get("bodySite") or []
    if not sites:
        raise _invalid("Condition.bodySite is needed (where the scar is).", f"{at}.bodySite", code="required")
    body_site = _coded(sites[0], f"{at}.bodySite[0]", SITE_OF_CODE, "body site", unsupported=False)
    body_site = body_site or sites[0].get("text")
    if not body_site:
        raise _invalid("bodySite needs a SNOMED CT code or a text.", f"{at}.bodySite[0]", code="required")
    stages = resource.get("stage") or []
    stage = ((stages[0].get("summary") or {}).get("text") if stages else None) or None
    fields = {"body_site": body_site, "diagnosis": diagnosis, "stage": stage}
    if resource.get("abatementDateTime"):
        fields["excision_date"] = _full_date(resource["abatementDateTime"], f"{at}.abatementDateTime")
    return _Site(at, fields)


def _procedure(resource: dict, at: str, sites: dict[str, _Site]) -> _Site:
    reasons = resource.get("reasonReference") or []
    reference = reasons[0].get("reference") if reasons else None
    site = sites.get(reference)
    if site is None:
        raise _invalid(f"reasonReference must refer to a Condition of the Bundle; {reference!r} does not resolve.",
                       f"{at}.reasonReference[0].reference", code="not-found")
    if site.procedure_at:
        raise _invalid("One Procedure per Condition.", f"{at}.reasonReference[0].reference")
    if not resource.get("performedDateTime"):
        raise _invalid("The excision's date is needed.", f"{at}.performedDateTime", code="required")
    performed = _full_date(resource["performedDateTime"], f"{at}.performedDateTime")
    if site.fields.get("excision_date", performed) != performed:
        raise _invalid("The Procedure's date differs from its Condition's abatementDateTime.",
                       f"{at}.performedDateTime")
    site.fields["excision_date"] = performed
    site.procedure_at = f"{at}.performedDateTime"
    return site


def enrol(user: User, enrolment: _Enrolment) -> list[dict]:
    """Create what is new, in one transaction; the transaction-response entries, in the Bundle's order."""
    clinic = db.session.get(Clinic, user.clinic_id)
    try:
        patient = db.session.execute(select(Patient).where(
            Patient.clinic_id == clinic.id, Patient.identifier_system == enrolment.system,
            Patient.identifier_value == enrolment.value)).scalar_one_or_none()
        patient_created = patient is None
        if patient_created:
            patient = create_patient(clinic, **enrolment.patient)
            patient.identifier_system, patient.identifier_value = enrolment.system, enrolment.value
        created: dict[int, Site] = {}
        outcomes: dict[int, tuple[Site, bool]] = {}
        for site_in in enrolment.sites:
            fields = site_in.fields
            site = db.session.execute(select(Site).where(
                Site.patient_id == patient.id, Site.diagnosis == fields["diagnosis"],
                func.lower(Site.body_site) == fields["body_site"].strip().lower(),
                Site.excision_date == fields["excision_date"]).order_by(Site.id).limit(1)).scalar_one_or_none()
            if site is None:
                site = create_site(patient, dermatologist=user if user.role == "dermatologist" else None, **fields)
                created[site.id] = site
            outcomes[id(site_in)] = (site, site.id in created)
        audit.record("fhir_enrol", "patient", patient.id, user=user, commit=False, patient_created=patient_created,
                     sites_created=sorted(created))
        db.session.commit()
    except IntegrityError:
        # The same patient enrolled at the same moment by another request: send the Bundle again.
        db.session.rollback()
        raise FhirError(409, "This patient was being enrolled by another request; send the Bundle again.",
                        code="conflict") from None
    except BaseException:
        db.session.rollback()
        raise
    entries = []
    for kind, site_in in enrolment.order:
        if kind == "Patient":
            entries.append(_response("Patient", patient.id, patient_created))
        else:
            site, new = outcomes[id(site_in)]
            entries.append(_response(kind, site.id, new))
    return entries


def _response(kind: str, id_: int, created: bool) -> dict:
    return {"response": {"status": "201 Created" if created else "200 OK", "location": f"{kind}/{id_}"}}
