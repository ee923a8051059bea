"""The codes the FHIR API speaks: SNOMED CT for diagnoses, body sites and the excision, and our own CodeSystem
for what only Scar Watch measures (documented in the README's FHIR section)."""
from __future__ import annotations

from typing import Optional

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

# Body sites staff type most often (lower case, as stored) → SNOMED CT body structure. A site typed otherwise is
# served with its text only; an enrolment may send one of these codes or the text.
BODY_SITES: dict[str, tuple[str, str]] = {
    "scalp": ("41695006", "Scalp structure"),
    "face": ("89545001", "Face structure"),
    "nose": ("45206002", "Nasal structure"),
    "left ear": ("89644007", "Left ear structure"),
    "right ear": ("25577004", "Right ear structure"),
    "neck": ("45048000", "Neck structure"),
    "chest": ("51185008", "Thoracic structure"),
    "back": ("77568009", "Structure of back of trunk"),
    "left shoulder": ("91775009", "Structure of left shoulder region"),
    "right shoulder": ("91774008", "Structure of right shoulder region"),
    "left upper arm": ("368208006", "Left upper arm structure"),
    "right upper arm": ("368209003", "Right upper arm structure"),
    "left forearm": ("66480008", "Structure of left forearm"),
    "right forearm": ("64262003", "Structure of right forearm"),
    "back of left hand": ("789218009", "Structure of dorsum of left hand"),
    "back of right hand": ("789219001", "Structure of dorsum of right hand"),
    "left thigh": ("61396006", "Structure of left thigh"),
    "right thigh": ("11207009", "Structure of right thigh"),
    "left lower leg": ("48979004", "Structure of left lower leg"),
    "right lower leg": ("32696007", "Structure of right lower leg"),
}
BODY_SITE_OF_CODE = {code: name for name, (code, _) in BODY_SITES.items()}

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
    """A site's CodeableConcept: its text, with the SNOMED CT code when the text is one of ours."""
    known = BODY_SITES.get(name.strip().lower())
    return snomed(*known, text=name) if known else {"text": name}


def diagnosis(value: str) -> dict:
    return snomed(*DIAGNOSES[value])
