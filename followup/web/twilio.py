"""Twilio's webhooks: ``POST /twilio/sms`` (a text to us) and ``POST /twilio/status`` (delivery status).

Both check ``X-Twilio-Signature`` against ``PUBLIC_BASE_URL`` + the path — never against the URL of the
request as it arrived, which a proxy rewrites and a forger controls (Host header) — and answer 403 otherwise.
Twilio delivers at least once: an inbound MessageSid already stored is acknowledged and ignored; status
callbacks only ever move a message forwards. Which clinic's inbox a text goes to is `followup.outreach.inbound`'s call.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from twilio.twiml.messaging_response import MessagingResponse

from followup.db import db, utcnow
from followup.models import Clinic, InboundMessage
from followup.outreach import consent, delivery, inbound
from followup.outreach.texts import render_sms
from followup.records.links import hide_tokens
from notifications.webhooks import (
    InboundIntent,
    parse_inbound_sms,
    parse_status_callback,
    verify_twilio_signature,
    webhook_url,
)

log = logging.getLogger(__name__)

bp = Blueprint("twilio", __name__, url_prefix="/twilio")


@bp.before_request
def _check_signature() -> None:
    url = webhook_url(current_app.config["PUBLIC_BASE_URL"], request.path, request.query_string)
    if not verify_twilio_signature(current_app.config["TWILIO_AUTH_TOKEN"], url, request.form,
                                   request.headers.get("X-Twilio-Signature")):
        log.warning("twilio webhook %s: bad or missing signature", hide_tokens(request.path))
        abort(403, "This request is not signed by Twilio.")


def _twiml(reply: str | None = None) -> Response:
    answer = MessagingResponse()
    if reply:
        answer.message(reply)
    return Response(str(answer), mimetype="text/xml")


@bp.post("/sms")
def inbound_sms():
    try:
        sms = parse_inbound_sms(request.form)
    except ValueError as exc:
        abort(400, str(exc))
    if db.session.execute(select(InboundMessage.id).where(InboundMessage.twilio_sid == sms.message_sid)).first():
        return _twiml()  # a repeated delivery: handled the first time
    now = utcnow()
    to_us = inbound.sent_to_our_sender(current_app.config, to_number=sms.to_number,
                                       messaging_service_sid=request.form.get("MessagingServiceSid", ""))
    route = inbound.route(sms.from_number, to_our_sender=to_us, now=now)
    keyword = sms.intent != InboundIntent.TEXT
    # One row per inbox: several clinics that could be meant each get it, unmatched (patient_id None).
    db.session.add_all(InboundMessage(
        clinic_id=clinic_id, patient_id=route.patient_id, twilio_sid=sms.message_sid, from_number=sms.from_number,
        body=sms.body, intent=str(sms.intent), handled_at=now if keyword else None,
    ) for clinic_id in route.clinic_ids or (None,))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()  # the same MessageSid, delivered twice at once
        return _twiml()
    reply = None
    if sms.intent == InboundIntent.OPT_OUT:
        consent.opt_out(sms.from_number, source=f"SMS {sms.body.strip()[:20]!r}", commit=False)
    elif sms.intent == InboundIntent.OPT_IN:
        consent.opt_in(sms.from_number, commit=False)
    elif sms.intent == InboundIntent.HELP and not request.form.get("OptOutType"):
        # (With OptOutType set, Twilio's Advanced Opt-Out has already answered.) No clinic is named unless
        # the text is surely for it.
        clinic = db.session.get(Clinic, route.clinic_id) if route.clinic_id else None
        reply = render_sms("help", clinic_name=clinic.name if clinic else "Scar Watch",
                           clinic_phone=clinic.phone if clinic else None)
    db.session.commit()
    # STOP/START: Twilio's Advanced Opt-Out already answers the patient; a second text would be noise.
    return _twiml(reply)


@bp.post("/status")
def delivery_status():
    try:
        result = parse_status_callback(request.form)
    except ValueError as exc:
        abort(400, str(exc))
    row = delivery.record_delivery(result.sid, request.form.get("MessageStatus", ""), result)
    if row is None:
        log.info("twilio status for unknown message %s (%s)", result.sid, request.form.get("MessageStatus"))
    elif result.opted_out:
        consent.opt_out(row.to, source="twilio 21610", commit=False)
    db.session.commit()
    return Response(status=204)
