"""The codes the FHIR API speaks: SNOMED CT for diagnoses, body sites (from the one table of
``followup.records.body_sites``, which DICOM reads too) and the excision, and our own CodeSystem for what only
Scar Watch measures (documented in the README's FHIR section); and our states (the models' StrEnums) as the
status codes of FHIR's resources."""
from __future__ import annotations

from typing import Optional

from followup.models.alerts import AlertPriority, AlertStatus
from followup.models.messages import OutboxStatus
from followup.models.photos import PhotoStatus
from followup.models.plans import PlanItemStatus
from followup.records.body_sites import read_body_site

SNOMED = "http://snomed.info/sct"
#: Our scores and plan activities; a URN, so that it names the same thing on every deployment.
LOCAL = "urn:scarwatch:fhir:CodeSystem:followup"

# Our diagnosis → (SNOMED CT disorder, display). A Condition coded otherwise is a diagnosis we do not follow up.
DIAGNOSES: dict[str, tuple[str, str]] = {
    "melanoma": ("372244006", "Malignant melanoma"),
    "bcc": ("254701007", "Basal cell carcinoma of skin"),
    "scc": ("254651007", "Squamous cell carcinoma of skin"),
    "other": ("372130007", "Malignant neoplasm of skin"),
}
DIAGNOSIS_OF_CODE = {code: diagnosis for diagnosis, (code, _) in DIAGNOSES.items()}

EXCISION = ("35646002", "Excision of lesion of skin")

# Our local codes: the scores of an analysis, a changed region's measurements, plan activities, alert outcomes.
LOCAL_CODES: dict[str, str] = {
    "change-score": "Probability of a clinically relevant change since the reference photo (0-1)",
    "recurrence-score": "Recurrence score of the model (0-1)",
    "changed-region": "A region that changed since the reference photo",
    "changed-area": "Area of a changed region",
    "distance-to-lesion": "Distance of a changed region from the scar",
    "scar-comparison": "Comparison of a follow-up photo of a scar with a reference photo",
    "visit": "Clinic visit",
    "photo": "Patient photo of the scar",
    "no_change": "No change",
    "benign_change": "Benign change",
    "rephoto": "New photo requested",
    "biopsy": "Biopsy",
    "alert-open": "In the triage queue",
    "alert-claimed": "Claimed by a dermatologist",
    "alert-resolved": "Resolved",
    "outcome": "Outcome of the triage",
}


def snomed(code: str, display: str, text: Optional[str] = None) -> dict:
    concept = {"coding": [{"system": SNOMED, "code": code, "display": display}]}
    if text:
        concept["text"] = text
    return concept


def local(code: str) -> dict:
    return {"coding": [{"system": LOCAL, "code": code, "display": LOCAL_CODES[code]}], "text": LOCAL_CODES[code]}


def body_site(name: str) -> dict:
    """A site's CodeableConcept: its text, with the SNOMED CT code of what the body-site table reads in it."""
    concept = read_body_site(name).concept
    return snomed(*concept, text=name) if concept else {"text": name}


def diagnosis(value: str) -> dict:
    return snomed(*DIAGNOSES[value])


# Our states as FHIR's: a plan activity's, a photo's (Media), a text's (Communication), an alert's (Task).
ACTIVITY_STATUS = {PlanItemStatus.PENDING: "scheduled", PlanItemStatus.DONE: "completed",
                   PlanItemStatus.MISSED: "stopped", PlanItemStatus.CANCELLED: "cancelled"}
MEDIA_STATUS = {PhotoStatus.QUEUED: "in-progress", PhotoStatus.PROCESSING: "in-progress",
                PhotoStatus.DONE: "completed", PhotoStatus.REJECTED: "not-done", PhotoStatus.FAILED: "not-done"}
COMMUNICATION_STATUS = {OutboxStatus.PENDING: "preparation", OutboxStatus.SENDING: "in-progress",
                        OutboxStatus.SENT: "completed", OutboxStatus.DELIVERED: "completed",
                        OutboxStatus.FAILED: "not-done", OutboxStatus.NOT_SENT: "not-done",
                        OutboxStatus.UNKNOWN: "unknown", OutboxStatus.CANCELLED: "stopped",
                        "received": "completed"}  # an inbound text
TASK_STATUS = {AlertStatus.OPEN: "requested", AlertStatus.CLAIMED: "in-progress", AlertStatus.RESOLVED: "completed"}
TASK_PRIORITY = {AlertPriority.URGENT: "stat", AlertPriority.HIGH: "urgent", AlertPriority.ROUTINE: "routine"}
