"""Whose inbox a text from a patient belongs to.

Every clinic texts its patients from the one configured sender (``TWILIO_MESSAGING_SERVICE_SID`` or
``TWILIO_FROM_NUMBER``), and one phone number may belong to patients of several clinics (a family phone, a
patient followed at two clinics). So a text is matched to the conversation it answers: of the clinics that
texted that number from the number it was sent to within `REPLY_WINDOW`, the one whose text was sent last
(the patients it texted in the window are the ones meant); without such a conversation, the clinics of the
patients with that number. One clinic: its inbox (and its patient, when only one is meant). Several clinics (a
tie on the latest text to the instant, or no conversation and the number at several clinics): every one of
them gets the text unmatched — never one clinic's text in another's patient record.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Optional

from sqlalchemy import func, select

from followup.db import db
from followup.models import OutboundMessage, Patient
from followup.models.messages import OutboxStatus

#: How long after our text a reply is taken to answer it (an upload link lives 14 days by default).
REPLY_WINDOW = timedelta(days=14)
#: Outbox states in which Twilio took the text: the patient may be answering it.
_REACHED = (OutboxStatus.SENT, OutboxStatus.DELIVERED)


@dataclass(frozen=True)
class Route:
    """Where an inbound text goes: ``clinic_ids``, every inbox it belongs in (empty: nobody's number), and
    ``patient_id``, the one patient it is from (None: unmatched)."""

    clinic_ids: tuple[int, ...]
    patient_id: Optional[int]

    @property
    def clinic_id(self) -> Optional[int]:
        """The one clinic the text is for; None when nobody's or when several clinics could be meant."""
        return self.clinic_ids[0] if len(self.clinic_ids) == 1 else None


def sent_to_our_sender(config: Mapping[str, Any], *, to_number: str, messaging_service_sid: str) -> bool:
    """Whether a text arrived on the sender our texts go out from (the Messaging Service wins, as in sending)."""
    if config.get("TWILIO_MESSAGING_SERVICE_SID"):
        return messaging_service_sid == config["TWILIO_MESSAGING_SERVICE_SID"]
    return bool(config.get("TWILIO_FROM_NUMBER")) and to_number == config["TWILIO_FROM_NUMBER"]


def route(from_number: str, *, to_our_sender: bool, now: datetime) -> Route:
    """The inboxes (and patient) a text from ``from_number`` received at ``now`` belongs to.

    ``to_our_sender``: it came to the number our texts are sent from, so our recent texts to that number are
    the conversation it answers; a text to any other number is matched by its sender's number alone.
    """
    known = set(db.session.execute(
        select(Patient.clinic_id, Patient.id).where(Patient.phone == from_number)).tuples())
    meant = known
    if known and to_our_sender:
        # Each patient texted in the window, with when we last texted them.
        talked = db.session.execute(
            select(Patient.clinic_id, Patient.id, func.max(OutboundMessage.sent_at))
            .join(OutboundMessage, OutboundMessage.patient_id == Patient.id)
            .where(OutboundMessage.patient_id.in_([patient_id for _, patient_id in known]),
                   OutboundMessage.to == from_number, OutboundMessage.status.in_(_REACHED),
                   OutboundMessage.sent_at >= now - REPLY_WINDOW)
            .group_by(Patient.clinic_id, Patient.id)).tuples().all()
        if talked:
            # The latest text is the conversation answered: its clinic (several only on an exact tie).
            latest = max(sent_at for _, _, sent_at in talked)
            clinics = {clinic_id for clinic_id, _, sent_at in talked if sent_at == latest}
            meant = {(clinic_id, patient_id) for clinic_id, patient_id, _ in talked if clinic_id in clinics}
    clinic_ids = tuple(sorted({clinic_id for clinic_id, _ in meant}))
    patient_ids = {patient_id for _, patient_id in meant}
    return Route(clinic_ids, patient_ids.pop() if len(clinic_ids) == 1 and len(patient_ids) == 1 else None)
