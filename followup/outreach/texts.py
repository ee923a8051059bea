"""The words of every text (``templates/sms/<name>.txt``) and the patient's retake request."""
from __future__ import annotations

from typing import Any, Optional

from flask import Flask, render_template

from followup.db import db
from followup.models import Clinic, OutboundMessage, Site
from followup.models.messages import OutboxStatus
from followup.outreach import outbox
from followup.outreach.hours import sms_date
from followup.records import links


def init_app(app: Flask) -> None:
    app.add_template_filter(sms_date, "sms_date")


def render_sms(name: str, **context: Any) -> str:
    """A text from ``templates/sms/<name>.txt``, whitespace collapsed to single spaces."""
    return " ".join(render_template(f"sms/{name}.txt", **context).split())


def request_retake(site: Site, reasons: list[str], *, key: str, user_id: Optional[int] = None
                   ) -> Optional[OutboundMessage]:
    """Ask the patient for a new photo with a fresh upload link (older links revoked), through the outbox.

    ``key`` makes the request idempotent (a job or a click run twice texts once): it is checked — and the
    outbox row holding it written — *before* the site's links are touched, so a second request changes
    nothing and the link the patient was just sent stays live. The text keeps the patient rules (quiet
    hours, one text a day: `reminder_guard`). A patient who cannot receive texts gets a ``not_sent`` row
    instead, so staff see that someone must call. Part of the caller's transaction.
    """
    patient = site.patient
    clinic = db.session.get(Clinic, patient.clinic_id)
    if patient.can_receive_sms:
        message = outbox.enqueue(key=key, clinic_id=clinic.id, to=patient.phone, body="", purpose="retake",
                                    patient_id=patient.id, user_id=user_id)
    else:
        message = outbox.enqueue(key=key, clinic_id=clinic.id, to=patient.phone, body="", purpose="retake",
                                    patient_id=patient.id, user_id=user_id, status=OutboxStatus.NOT_SENT,
                                    error_message="The patient cannot receive texts: please call them.")
    if message is None:
        return None  # asked before (or by another process meanwhile): the link already sent stays the live one
    token, _ = links.create_link(site)  # the site's older links revoked
    message.body = render_sms("photo_retake", clinic=clinic, site=site,
                              reasons="; ".join(reasons) or "it was not clear", link=links.sealed_link(token))
    db.session.flush()
    return message
