"""Our rows as FHIR resources, and the registry of resource types the API serves.

One ``Handler`` per resource type says which rows it comes from (always scoped to a clinic), which search
parameters it takes and how a row becomes resources; reads, searches, ``$everything`` and the
CapabilityStatement are all generated from ``HANDLERS``, so what is served and what is declared cannot drift.
Every resource is built with the ``fhir.resources`` R4B model of its type (R4 JSON for these types)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from sqlalchemy import BigInteger, ColumnElement, Select, cast, false, literal, select, true, union_all
from sqlalchemy.orm import selectinload

from followup.db import MAX_ID, db
from followup.fhir import codes
from followup.fhir.common import attachment, last_updated, meta, overlay_url, reference
from followup.models import Alert, Analysis, FollowUpPlan, InboundMessage, OutboundMessage, Patient, Photo, Site, User
from followup.models.photos import PhotoKind, PhotoStatus
from followup.records.links import hide_links
from followup.records.patients import OVERLAYS
from followup.storage import image_mimetype

# The builders: one row (the handler's select, with ``patient_id`` and ``updated``) → its resources.

def _patient(row) -> list[dict]:
    patient: Patient = row.Patient
    resource = {
        "resourceType": "Patient", "id": str(patient.id), "meta": meta(row.updated), "active": True,
        "name": [{"text": patient.name}],
        "telecom": [{"system": "phone", "value": patient.phone, "use": "mobile"}],
    }
    if patient.identifier_value:
        resource["identifier"] = [{"system": patient.identifier_system, "value": patient.identifier_value}]
    if patient.date_of_birth:
        resource["birthDate"] = patient.date_of_birth.isoformat()
    return [resource]


def _condition(row) -> list[dict]:
    site: Site = row.Site
    resource = {
        "resourceType": "Condition", "id": str(site.id), "meta": meta(row.updated),
        # Excised: in remission while followed up, resolved once the follow-up is closed.
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "resolved" if site.closed_at else "remission"}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": codes.diagnosis(site.diagnosis), "bodySite": [codes.body_site(site.body_site)],
        "subject": reference("Patient", site.patient_id),
        # The cancer was cut out on the excision date.
        "abatementDateTime": site.excision_date.isoformat(), "recordedDate": site.created_at.isoformat(),
    }
    if site.stage:
        resource["stage"] = [{"summary": {"text": site.stage}}]
    return [resource]


def _procedure(row) -> list[dict]:
    site: Site = row.Site
    return [{
        "resourceType": "Procedure", "id": str(site.id), "meta": meta(row.updated), "status": "completed",
        "code": codes.snomed(*codes.EXCISION), "subject": reference("Patient", site.patient_id),
        "performedDateTime": site.excision_date.isoformat(), "bodySite": [codes.body_site(site.body_site)],
        "reasonReference": [reference("Condition", site.id)],
    }]


def _baseline(site_id: int) -> Optional[Photo]:
    return db.session.execute(
        select(Photo)
        .where(Photo.site_id == site_id, Photo.kind == PhotoKind.BASELINE, Photo.status == PhotoStatus.DONE)
        .order_by(Photo.received_at.desc(), Photo.id.desc()).limit(1)
    ).scalar_one_or_none()


def _body_structure(row) -> list[dict]:
    site: Site = row.Site
    resource = {
        "resourceType": "BodyStructure", "id": str(site.id), "meta": meta(row.updated),
        "active": site.closed_at is None, "location": codes.body_site(site.body_site),
        "description": site.body_site, "patient": reference("Patient", site.patient_id),
    }
    baseline = _baseline(site.id)
    if baseline is not None:
        resource["image"] = [attachment(baseline)]
    return [resource]




def _care_plan(row) -> list[dict]:
    plan: FollowUpPlan = row.FollowUpPlan
    site: Site = row.Site
    return [{
        "resourceType": "CarePlan", "id": str(plan.id), "meta": meta(row.updated),
        "status": "completed" if site.closed_at else "active", "intent": "plan",
        "title": f"Follow-up after excision ({plan.protocol})", "description": plan.source,
        "subject": reference("Patient", site.patient_id), "addresses": [reference("Condition", site.id)],
        "period": {"start": site.excision_date.isoformat()},
        "activity": [{"detail": {"code": codes.local(item.kind), "status": codes.ACTIVITY_STATUS[item.status],
                                 "scheduledPeriod": {"start": item.due_date.isoformat()}}}
                     for item in plan.items],
    }]




# What each overlay shows (an analysis draws them all over the follow-up photo aligned onto its reference).
_OVERLAY_TITLES = {
    "aligned": "Follow-up photo aligned onto the reference photo",
    "outline": "Changed areas outlined on the aligned follow-up photo",
    "heatmap": "Change heatmap over the aligned follow-up photo",
    "saliency": "Where the recurrence model looked, over the aligned follow-up photo",
}


def overlays_of(analysis: Analysis) -> list[tuple[str, str]]:
    """(Media id, overlay name) of each overlay a scored analysis made, in the triage page's order. The id is
    ``{photo id}-{analysis id}-{name}``: an overlay is served, searched and paged with its photo's Media."""
    if analysis.change_score is None:  # a baseline's quality check: no report to belong to
        return []
    stored = analysis.overlays or {}
    return [(f"{analysis.photo_id}-{analysis.id}-{name}", name) for name in OVERLAYS if stored.get(name)]


def _overlay_media(photo_media: dict, analysis: Analysis) -> list[dict]:
    version = analysis.model_version or "unversioned"
    sources = f"Media/{analysis.photo_id}" + (
        f" against its {analysis.comparison} photo Media/{analysis.reference_photo_id}"
        if analysis.reference_photo_id else "")
    made = analysis.created_at.isoformat()
    resources = []
    for media_id, name in overlays_of(analysis):
        key = analysis.overlays[name]
        resources.append({
            "resourceType": "Media", "id": media_id, "meta": photo_media["meta"], "status": photo_media["status"],
            "type": photo_media["type"], "subject": photo_media["subject"],
            # The analysis' report lists it among its media; Provenance names the photos it was made from.
            "partOf": [reference("DiagnosticReport", analysis.id)], "createdDateTime": made, "issued": made,
            "bodySite": photo_media["bodySite"], "device": {"display": f"Scar Watch recurrence model {version}"},
            "content": {"contentType": image_mimetype(key), "url": overlay_url(analysis.id, name), "creation": made,
                        "title": f"{name}: {_OVERLAY_TITLES[name]}"},
            "note": [{"text": f"{name} overlay of the analysis of {sources}"}],
        })
    return resources


def _media(row) -> list[dict]:
    """A photo's Media, then one Media per overlay of each of its analyses."""
    photo: Photo = row.Photo
    resource = {
        "resourceType": "Media", "id": str(photo.id), "meta": meta(row.updated),
        "status": codes.MEDIA_STATUS[photo.status],
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/media-type", "code": "image",
                             "display": "Image"}]},
        "subject": reference("Patient", row.patient_id),
        "createdDateTime": (photo.captured_at or photo.received_at).isoformat(),
        "issued": photo.received_at.isoformat(), "bodySite": codes.body_site(row.Site.body_site),
        "width": photo.width, "height": photo.height, "content": attachment(photo),
        "note": [{"text": f"{photo.kind} photo"}] + ([{"text": photo.status_detail}] if photo.status_detail else []),
    }
    if photo.modality:
        resource["modality"] = {"text": photo.modality}
    return [resource] + [overlay for analysis in sorted(photo.analyses, key=lambda a: a.id)
                         for overlay in _overlay_media(resource, analysis)]


def _score(code: str, value: float) -> dict:
    return {"code": codes.local(code),
            "valueQuantity": {"value": round(value, 4), "unit": "probability", "system": "http://unitsofmeasure.org",
                              "code": "1"}}


def _px(code: str, value: Optional[float]) -> Optional[dict]:
    # Measurements in the photo's pixels (always); in mm beside them where the photo had a scale (_mm).
    if value is None:
        return None
    return {"code": codes.local(code), "valueQuantity": {"value": round(float(value), 2), "unit": "px"}}


def _mm(code: str, value: Optional[float], unit: str) -> Optional[dict]:
    if value is None:
        return None
    return {"code": codes.local(code), "valueQuantity": {"value": round(float(value), 2), "unit": unit,
                                                         "system": "http://unitsofmeasure.org", "code": unit}}


def observation_parts(analysis: Analysis) -> list[tuple[str, dict]]:
    """(id suffix, the part particular to it) for each Observation of an analysis: its two scores and one
    Observation per changed region."""
    parts = [("change", _score("change-score", analysis.change_score))]
    if analysis.recurrence_score is not None:
        parts.append(("recurrence", _score("recurrence-score", analysis.recurrence_score)))
    for i, region in enumerate(analysis.regions or [], start=1):
        components = [c for c in (_px("changed-area", region.get("area_px")),
                                  _px("distance-to-lesion", region.get("distance_to_lesion_px")),
                                  _mm("changed-area", region.get("area_mm2"), "mm2"),
                                  _mm("distance-to-lesion", region.get("distance_to_scar_mm"), "mm")) if c]
        parts.append((f"region-{i}", {"code": codes.local("changed-region"), "component": components,
                                      "valueString": str(region.get("kind") or "change")}))
    return parts


def _analysis_common(row) -> dict:
    analysis: Analysis = row.Analysis
    photo: Photo = row.Photo
    return {"status": "final", "meta": meta(row.updated),
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "imaging", "display": "Imaging"}]}],
            "subject": reference("Patient", row.patient_id),
            "effectiveDateTime": (photo.captured_at or photo.received_at).isoformat(),
            "issued": analysis.created_at.isoformat()}


def _observations(row) -> list[dict]:
    analysis: Analysis = row.Analysis
    version = analysis.model_version or "unversioned"
    common = _analysis_common(row)
    derived = [reference("Media", analysis.photo_id)] + (
        [reference("Media", analysis.reference_photo_id)] if analysis.reference_photo_id else [])
    return [{"resourceType": "Observation", "id": f"{analysis.id}-{suffix}", **common, **part,
             "bodySite": codes.body_site(row.Site.body_site), "derivedFrom": derived,
             "method": {"text": f"Scar Watch {analysis.comparison} comparison, model {version}"},
             "device": {"display": f"Scar Watch recurrence model {version}"}}
            for suffix, part in observation_parts(analysis)]


def _diagnostic_report(row) -> list[dict]:
    analysis: Analysis = row.Analysis
    common = _analysis_common(row)
    category = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "IMG",
                             "display": "Diagnostic Imaging"}]}]
    media = [{"comment": "follow-up photo", "link": reference("Media", analysis.photo_id)}]
    if analysis.reference_photo_id:
        media.append({"comment": f"{analysis.comparison} photo",
                      "link": reference("Media", analysis.reference_photo_id)})
    media += [{"comment": f"{name} overlay", "link": reference("Media", media_id)}
              for media_id, name in overlays_of(analysis)]
    return [{"resourceType": "DiagnosticReport", "id": str(analysis.id), **common, "category": category,
             "code": codes.local("scar-comparison"),
             "result": [reference("Observation", f"{analysis.id}-{suffix}")
                        for suffix, _ in observation_parts(analysis)],
             "media": media, "conclusion": "; ".join(analysis.reasons or []) or "No change found."}]


def _provenance(row) -> list[dict]:
    """What the model produced from which photos: the analysis' report, Observations and overlay images."""
    analysis: Analysis = row.Analysis
    version = analysis.model_version or "unversioned"
    targets = [reference("DiagnosticReport", analysis.id)] + [
        reference("Observation", f"{analysis.id}-{suffix}") for suffix, _ in observation_parts(analysis)] + [
        reference("Media", media_id) for media_id, _ in overlays_of(analysis)]
    photos = [analysis.photo_id] + ([analysis.reference_photo_id] if analysis.reference_photo_id else [])
    return [{
        "resourceType": "Provenance", "id": str(analysis.id), "meta": meta(row.updated), "target": targets,
        "recorded": analysis.created_at.isoformat(),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                 "code": "CREATE", "display": "create"}]},
        "agent": [{"type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "assembler",
            "display": "Assembler"}]}, "who": {"display": f"Scar Watch recurrence model {version}"}}],
        "entity": [{"role": "source", "what": reference("Media", photo_id)} for photo_id in photos],
    }]


# Texts to and from patients, as one row source: an outbound text's key is 2 × its id, an inbound one's 2 × id + 1.
_TEXTS = union_all(
    select((cast(OutboundMessage.id, BigInteger) * 2).label("text_key"), literal("out").label("direction"),
           OutboundMessage.patient_id.label("text_patient_id"), OutboundMessage.body.label("body"),
           OutboundMessage.status.label("text_status"), OutboundMessage.purpose.label("purpose"),
           OutboundMessage.sent_at.label("sent_at"), OutboundMessage.updated_at.label("text_updated"))
    # Texts to patients (a staff member's alert texts name no patient's details and are not the patient's record).
    .where(OutboundMessage.patient_id.is_not(None), OutboundMessage.user_id.is_(None)),
    select((cast(InboundMessage.id, BigInteger) * 2 + 1), literal("in"), InboundMessage.patient_id,
           InboundMessage.body, literal("received"), InboundMessage.intent, InboundMessage.received_at,
           InboundMessage.received_at)
    .join(Patient, Patient.id == InboundMessage.patient_id)
    # A text goes to the patient's record only in the inbox of the patient's own clinic.
    .where(InboundMessage.clinic_id == Patient.clinic_id),
).subquery("texts")


def _communication(row) -> list[dict]:
    patient = reference("Patient", row.patient_id)
    resource = {
        "resourceType": "Communication", "id": str(row.key), "meta": meta(row.updated),
        "status": codes.COMMUNICATION_STATUS[row.text_status], "category": [{"text": row.purpose}],
        "medium": [{"text": "SMS"}], "subject": patient,
        # Upload links carry a patient's credential: the text is shown as staff see it, without the token.
        "payload": [{"contentString": hide_links(row.body)}],
    }
    if row.direction == "in":
        resource.update(sender=patient, received=row.sent_at.isoformat())
    else:
        resource["recipient"] = [patient]
        if row.sent_at is not None:
            resource["sent"] = row.sent_at.isoformat()
    return [resource]




def _task(row) -> list[dict]:
    alert: Alert = row.Alert
    resource = {
        "resourceType": "Task", "id": str(alert.id), "meta": meta(row.updated),
        "status": codes.TASK_STATUS[alert.status], "businessStatus": codes.local(f"alert-{alert.status}"),
        "intent": "order", "priority": codes.TASK_PRIORITY.get(alert.priority, "routine"),
        "code": {"text": f"Review a {alert.kind.replace('_', ' ')} alert"},
        "description": "; ".join(alert.reasons or []) or None,
        "for": reference("Patient", row.patient_id), "authoredOn": alert.created_at.isoformat(),
        "lastModified": row.updated.isoformat(),
    }
    if alert.photo_id:
        resource["focus"] = reference("Media", alert.photo_id)
    owner = db.session.get(User, alert.claimed_by_id or alert.resolved_by_id) if (
        alert.claimed_by_id or alert.resolved_by_id) else None
    if owner is not None:
        # Practitioners are not served: the owner is named, not referenced.
        resource["owner"] = {"display": owner.name or owner.email}
    if alert.outcome:
        resource["output"] = [{"type": codes.local("outcome"), "valueCodeableConcept": codes.local(alert.outcome)}]
    if alert.note:
        resource["note"] = [{"text": alert.note}]
    return [{k: v for k, v in resource.items() if v is not None}]


# The registry.

StatusMap = dict[str, ColumnElement]


@dataclass(frozen=True)
class Handler:
    type: str
    key: Any  # the row's id column: reads find it, searches page on it
    patient_column: Any  # the patient the row belongs to (``patient`` search, audit)
    updated: Any  # meta.lastUpdated (``_lastUpdated`` search)
    entities: tuple  # what a row holds
    joins: tuple  # (entity, on) from the first entity to Patient
    build: Callable[[Any], list[dict]]
    statuses: StatusMap = field(default_factory=dict)  # FHIR status → the rows that have it
    where: Optional[ColumnElement] = None  # rows that make resources of this type
    options: tuple = ()
    max_key: int = MAX_ID

    def select(self, clinic_id: int) -> Select:
        stmt = select(*self.entities, self.key.label("key"), self.patient_column.label("patient_id"),
                      self.updated.label("updated"))
        for entity, on in self.joins:
            stmt = stmt.join(entity, on)
        stmt = stmt.where(Patient.clinic_id == clinic_id)
        if self.where is not None:
            stmt = stmt.where(self.where)
        return stmt.options(*self.options)

    def status_condition(self, value: str) -> ColumnElement:
        return self.statuses.get(value, false())


_SITE_JOINS = ((Patient, Patient.id == Site.patient_id),)
_SITE_UPDATED = last_updated(Site.closed_at, Site.created_at)
_PHOTO_JOINS = ((Site, Site.id == Photo.site_id),) + _SITE_JOINS
_ANALYSIS_JOINS = ((Photo, Photo.id == Analysis.photo_id),) + _PHOTO_JOINS
# Comparisons with a reference photo (a baseline's own quality check has no scores).
_SCORED = Analysis.change_score.is_not(None)
_FINAL = {"final": true()}

HANDLERS: dict[str, Handler] = {h.type: h for h in (
    Handler("Patient", Patient.id, Patient.id, last_updated(Patient.opted_out_at, Patient.created_at), (Patient,), (),
            _patient),
    Handler("Condition", Site.id, Site.patient_id, _SITE_UPDATED, (Site,), _SITE_JOINS, _condition),
    Handler("Procedure", Site.id, Site.patient_id, _SITE_UPDATED, (Site,), _SITE_JOINS, _procedure,
            statuses={"completed": true()}),
    Handler("BodyStructure", Site.id, Site.patient_id, _SITE_UPDATED, (Site,), _SITE_JOINS, _body_structure),
    Handler("CarePlan", FollowUpPlan.id, Site.patient_id, last_updated(Site.closed_at, FollowUpPlan.created_at),
            (FollowUpPlan, Site), ((Site, Site.id == FollowUpPlan.site_id),) + _SITE_JOINS, _care_plan,
            statuses={"active": Site.closed_at.is_(None), "completed": Site.closed_at.is_not(None)},
            options=(selectinload(FollowUpPlan.items),)),
    Handler("Media", Photo.id, Site.patient_id, Photo.status_changed_at, (Photo, Site), _PHOTO_JOINS, _media,
            statuses={fhir: Photo.status.in_([ours for ours, f in codes.MEDIA_STATUS.items() if f == fhir])
                      for fhir in set(codes.MEDIA_STATUS.values())}, options=(selectinload(Photo.analyses),)),
    Handler("Observation", Analysis.id, Site.patient_id, Analysis.created_at, (Analysis, Photo, Site),
            _ANALYSIS_JOINS, _observations, statuses=_FINAL, where=_SCORED),
    Handler("DiagnosticReport", Analysis.id, Site.patient_id, Analysis.created_at, (Analysis, Photo, Site),
            _ANALYSIS_JOINS, _diagnostic_report, statuses=_FINAL, where=_SCORED),
    Handler("Provenance", Analysis.id, Site.patient_id, Analysis.created_at, (Analysis, Photo, Site),
            _ANALYSIS_JOINS, _provenance, where=_SCORED),
    Handler("Communication", _TEXTS.c.text_key, _TEXTS.c.text_patient_id, _TEXTS.c.text_updated, (_TEXTS,),
            ((Patient, Patient.id == _TEXTS.c.text_patient_id),), _communication,
            statuses={fhir: _TEXTS.c.text_status.in_([ours for ours, f in codes.COMMUNICATION_STATUS.items()
                                                       if f == fhir])
                      for fhir in set(codes.COMMUNICATION_STATUS.values())},
            max_key=2 * MAX_ID + 1),
    Handler("Task", Alert.id, Site.patient_id, last_updated(Alert.resolved_at, Alert.claimed_at, Alert.created_at),
            (Alert, Site), ((Site, Site.id == Alert.site_id),) + _SITE_JOINS, _task,
            statuses={fhir: Alert.status == ours for ours, fhir in codes.TASK_STATUS.items()}),
)}
