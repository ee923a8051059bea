"""Helpers shared by the follow-up tests: times, enrolment and the SMS transport on the loopback Twilio."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from typing import Optional
from zoneinfo import ZoneInfo

from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import select

from followup.db import db
from followup.fhir import codes
from followup.models import Clinic, Patient, Photo, PlanItem, Site
from followup.outreach import reminders
from followup.records.patients import create_patient, create_site
from notifications.testing import DEFAULT_MESSAGING_SERVICE_SID, FakeTwilio
from notifications.twilio_sender import RetryPolicy, TwilioSender
from tests.conftest import PASSWORD

EXCISION = date(2027, 1, 4)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def local(tz: str, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


def make_sender(fake: FakeTwilio, **overrides) -> TwilioSender:
    """The real TwilioSender on the fake, without real waits."""
    settings = dict(account_sid=fake.account_sid, auth_token=fake.auth_token,
                    messaging_service_sid=DEFAULT_MESSAGING_SERVICE_SID, api_base_url=fake.base_url,
                    timeout_seconds=2.0, retry=RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0,
                                                           settle_delay=0.0),
                    lookup_settle_seconds=0.0, sleep=lambda seconds: None, rng=random.Random(3))
    settings.update(overrides)
    return TwilioSender(**settings)


def enrol(clinic: Clinic, phone: str, *, diagnosis: str = "bcc", stage: Optional[str] = None,
          tz: str = "Europe/London", excision: date = EXCISION, consent: bool = True, derm=None,
          body_site: str = "left forearm") -> tuple[Patient, Site]:
    patient = create_patient(clinic, name=f"Patient {phone[-4:]}", phone=phone, sms_consent=consent, timezone=tz)
    site = create_site(patient, body_site=body_site, diagnosis=diagnosis, stage=stage, excision_date=excision,
                       dermatologist=derm, today=excision)
    db.session.commit()
    return patient, site


def receive_photo(site: Site, at: datetime) -> Photo:
    """A photo arrives at ``at`` (what followup.intake.photos.receive_photo stores), then the reminders hook runs."""
    photo = Photo(site_id=site.id, kind="followup", sha256="0" * 64, storage_key="x.jpg", content_type="image/jpeg",
                  size_bytes=1, width=1, height=1, received_at=at, status="queued", status_changed_at=at)
    db.session.add(photo)
    db.session.commit()
    reminders.on_photo_received(photo)
    return photo


def items(site: Site, kind: str) -> list[PlanItem]:
    return [i for i in db.session.execute(select(PlanItem).join(PlanItem.plan).where(
        PlanItem.kind == kind).order_by(PlanItem.due_date)).scalars() if i.plan.site_id == site.id]


def login(client, email="derm@north.test"):
    response = client.post("/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return response


# --- FHIR ----------------------------------------------------------------------------------------------------

FHIR = "/fhir/r4"


def parse(resource: dict):
    """The resource read back by its fhir.resources model (raises when it is not valid FHIR)."""
    return get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def everything(client, headers, patient_id: int) -> dict:
    response = client.get(f"{FHIR}/Patient/{patient_id}/$everything", headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/fhir+json"
    return response.get_json()


def by_type(bundle: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for entry in bundle["entry"]:
        out.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    return out


def enrolment_bundle(*, identifier="MRN-1001", procedure=True) -> dict:
    patient = {"resourceType": "Patient", "identifier": [{"system": "https://hospital.test/mrn", "value": identifier}],
               "name": [{"given": ["Ada"], "family": "Lovelace"}],
               "telecom": [{"system": "email", "value": "ada@example.org"},
                           {"system": "phone", "value": "+447700900123"}],
               "birthDate": "1960-12-10"}
    condition = {"resourceType": "Condition", "subject": {"reference": "urn:uuid:patient-1"},
                 "code": {"coding": [{"system": codes.SNOMED, "code": "372244006"}]},
                 "bodySite": [{"coding": [{"system": codes.SNOMED, "code": "66480008"}]}],
                 "stage": [{"summary": {"text": "IIA"}}]}
    entries = [{"fullUrl": "urn:uuid:patient-1", "resource": patient, "request": {"method": "POST", "url": "Patient"}},
               {"fullUrl": "urn:uuid:condition-1", "resource": condition,
                "request": {"method": "POST", "url": "Condition"}}]
    excised = (date.today() - timedelta(days=40)).isoformat()
    if procedure:
        entries.append({"fullUrl": "urn:uuid:procedure-1", "request": {"method": "POST", "url": "Procedure"},
                        "resource": {"resourceType": "Procedure", "status": "completed",
                                     "subject": {"reference": "urn:uuid:patient-1"},
                                     "code": {"coding": [{"system": codes.SNOMED, "code": codes.EXCISION[0]}]},
                                     "reasonReference": [{"reference": "urn:uuid:condition-1"}],
                                     "performedDateTime": excised}})
    else:
        condition["abatementDateTime"] = excised
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def post_bundle(client, headers, bundle):
    return client.post(FHIR, json=bundle, headers={**headers, "Content-Type": "application/fhir+json"})
