"""A patient's consent to texts: STOP (or Twilio's error 21610) withdraws it, START gives it back."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Optional

from sqlalchemy import and_, select

from followup.db import db, utcnow
from followup.models import OutboundMessage, Patient, Reminder
from followup.outreach import outbox
from followup.outreach.reminders import SMS_KINDS, cancel_reminders

log = logging.getLogger(__name__)


def opt_out(phone: str, *, source: str = "STOP", at: Optional[datetime] = None, commit: bool = True) -> list[Patient]:
    """Every patient with this number stops getting SMS; their pending reminders and messages are withdrawn."""
    patients = list(db.session.execute(select(Patient).where(Patient.phone == phone)).scalars())
    for patient in patients:
        if patient.opted_out_at is None:
            patient.opted_out_at = at or utcnow()
    if patients:
        ids = [p.id for p in patients]
        cancel_reminders(and_(Reminder.patient_id.in_(ids), Reminder.kind.in_(SMS_KINDS)), f"opted out ({source})")
        outbox.cancel_pending(OutboundMessage.patient_id.in_(ids), f"opted out ({source})")
        log.info("consent: %d patient(s) opted out (%s)", len(patients), source)
    if commit:
        db.session.commit()
    return patients


def opt_in(phone: str, *, commit: bool = True) -> list[Patient]:
    """START/UNSTOP: the number gets reminders again (from the next ones planned)."""
    patients = list(db.session.execute(select(Patient).where(Patient.phone == phone)).scalars())
    for patient in patients:
        patient.opted_out_at = None
    if commit:
        db.session.commit()
    return patients
