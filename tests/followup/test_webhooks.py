"""Twilio's webhooks: signatures against PUBLIC_BASE_URL + path, keywords, the inbox, delivery statuses."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from followup import queries
from followup.db import db, utcnow
from followup.models import InboundMessage, OutboundMessage, Patient, Reminder
from followup.outreach import consent, sweep
from tests.followup.helpers import enrol, utc

BASE = "https://scarwatch.test"  # PUBLIC_BASE_URL in the tests' configuration
PHONE = "+447700900601"


def post(client, app, path: str, params: dict, *, url: str | None = None, signature: str | None = "sign",
         headers: dict | None = None):
    """POST form ``params``, signed (by default) as Twilio signs: over the public URL with the auth token."""
    sent_headers = dict(headers or {})
    if signature == "sign":
        sent_headers["X-Twilio-Signature"] = RequestValidator(app.config["TWILIO_AUTH_TOKEN"]).compute_signature(
            url or BASE + path, params)
    elif signature is not None:
        sent_headers["X-Twilio-Signature"] = signature
    return client.post(path, data=params, headers=sent_headers)


def inbound(sid: str, body: str, **extra) -> dict:
    return {"MessageSid": sid, "AccountSid": "AC" + "f" * 32, "From": PHONE, "To": "+15005550006", "Body": body,
            **extra}


@pytest.fixture
def patient(sms_app, world) -> Patient:
    patient, _ = enrol(world.clinic, PHONE)
    return patient


@pytest.mark.parametrize("path", ["/twilio/sms", "/twilio/status"])
def test_only_requests_signed_for_the_public_url_are_accepted(sms_app, client, patient, path):
    params = inbound("SM" + "1" * 32, "hello") if path.endswith("sms") else {
        "MessageSid": "SM" + "2" * 32, "MessageStatus": "delivered"}
    assert post(client, sms_app, path, params, signature=None).status_code == 403
    assert post(client, sms_app, path, params, signature="forged").status_code == 403
    # Signed for the URL the app saw (localhost) rather than the public one: a proxy or a forged Host.
    assert post(client, sms_app, path, params, url="http://localhost" + path).status_code == 403
    assert post(client, sms_app, path, params, headers={"Host": "evil.example"},
                url="http://evil.example" + path).status_code == 403
    tampered = dict(params, Body="STOP") if "Body" in params else dict(params, MessageStatus="failed")
    signature = RequestValidator(sms_app.config["TWILIO_AUTH_TOKEN"]).compute_signature(BASE + path, params)
    assert post(client, sms_app, path, tampered, signature=signature).status_code == 403
    assert post(client, sms_app, path, params).status_code in (200, 204)


def test_without_an_auth_token_nothing_verifies(sms_app, client, patient):
    sms_app.config["TWILIO_AUTH_TOKEN"] = ""
    assert post(client, sms_app, "/twilio/sms", inbound("SM" + "3" * 32, "hi"), signature="anything").status_code \
        == 403


def test_stop_words_opt_out_and_cancel_pending(sms_app, client, patient):
    sweep.dispatch(utc(2027, 1, 25, 10))  # plans the reminders of the photo due on 4 February
    for n, word in enumerate(["STOP", "stop", "StopAll", "UNSUBSCRIBE", "cancel", "END", "quit."]):
        consent.opt_in(PHONE)
        response = post(client, sms_app, "/twilio/sms", inbound(f"SM{n:032d}", word))
        assert response.status_code == 200 and response.mimetype == "text/xml"
        assert "<Message>" not in response.get_data(as_text=True)  # Twilio confirms opt-outs itself
        db.session.refresh(patient)
        assert patient.opted_out_at is not None and not patient.can_receive_sms, word
    pending = db.session.execute(select(Reminder).where(Reminder.status == "pending")).scalars().all()
    assert pending and all(r.kind == "photo_escalation" for r in pending)


def test_opt_out_type_from_twilio_wins_and_start_opts_back_in(sms_app, client, patient, fake_twilio):
    post(client, sms_app, "/twilio/sms", inbound("SM" + "5" * 32, "Arrêt", OptOutType="STOP"))
    db.session.refresh(patient)
    assert patient.opted_out_at is not None
    post(client, sms_app, "/twilio/sms", inbound("SM" + "6" * 32, "unstop"))
    db.session.refresh(patient)
    assert patient.opted_out_at is None
    sweep.dispatch(utc(2027, 2, 2, 10))
    assert [m.to for m in fake_twilio.messages] == [PHONE]


def test_help_gets_a_reply_naming_the_clinic(sms_app, client, patient):
    response = post(client, sms_app, "/twilio/sms", inbound("SM" + "7" * 32, "help"))
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "<Message>" in text
    assert "North Clinic" in text and "+441234567890" in text and "STOP" in text
    # Twilio's Advanced Opt-Out answered this one itself: no second reply.
    response = post(client, sms_app, "/twilio/sms", inbound("SM" + "d" * 32, "help", OptOutType="HELP"))
    assert "<Message>" not in response.get_data(as_text=True)


def test_other_texts_land_in_the_clinic_inbox_once(sms_app, client, patient, world):
    params = inbound("SM" + "8" * 32, "I'm on holiday until the 20th, will send it then")
    for _ in range(2):  # Twilio may deliver twice
        assert post(client, sms_app, "/twilio/sms", params).status_code == 200
    inbox = queries.inbox(world.clinic.id)
    assert [m.body for m in inbox] == [params["Body"]] and inbox[0].patient_id == patient.id
    assert queries.inbox(world.other_clinic.id) == []
    # A repeated STOP after START is the same message: not opted out again.
    post(client, sms_app, "/twilio/sms", inbound("SM" + "9" * 32, "STOP"))
    post(client, sms_app, "/twilio/sms", inbound("SM" + "a" * 32, "START"))
    post(client, sms_app, "/twilio/sms", inbound("SM" + "9" * 32, "STOP"))
    db.session.refresh(patient)
    assert patient.opted_out_at is None
    assert db.session.execute(select(db.func.count(InboundMessage.id))).scalar_one() == 3


def test_unknown_numbers_are_kept_for_staff_without_a_clinic(sms_app, client, patient):
    params = dict(inbound("SM" + "b" * 32, "who is this?"), From="+447700900999")
    assert post(client, sms_app, "/twilio/sms", params).status_code == 200
    row = db.session.execute(select(InboundMessage)).scalar_one()
    assert row.clinic_id is None and row.intent == "text"


SERVICE = "MG" + "1" * 32  # the Messaging Service our texts go out from, in these tests


def texted(patient: Patient, *, days_ago: float, status: str = "delivered", at=None) -> None:
    """An earlier text of the patient's clinic to them: the conversation a reply may answer (sent ``at``, when
    given: texts to the same instant)."""
    sent_at = at or utcnow() - timedelta(days=days_ago)
    db.session.add(OutboundMessage(clinic_id=patient.clinic_id, patient_id=patient.id, to=patient.phone,
                                   idempotency_key=f"test:{patient.id}:{days_ago}:{status}", body="Photo due",
                                   purpose="photo_due", status=status, sent_at=sent_at))
    db.session.commit()


@pytest.fixture
def shared_phone(sms_app, world):
    """The same number at both clinics (the North patient has the lower id), and both clinics' phones."""
    sms_app.config["TWILIO_MESSAGING_SERVICE_SID"] = SERVICE
    world.other_clinic.phone = "+441234500000"
    north, _ = enrol(world.clinic, PHONE)
    south, _ = enrol(world.other_clinic, PHONE)
    return north, south


def inbox_of(clinic) -> list[tuple]:
    return [(m.body, m.patient_id) for m in queries.inbox(clinic.id)]


def test_a_shared_number_goes_to_the_clinic_whose_conversation_it_answers(sms_app, client, world, shared_phone):
    north, south = shared_phone
    texted(north, days_ago=40)  # long ago: no longer a conversation
    texted(south, days_ago=1)
    params = inbound("SM" + "f" * 32, "Will send it tonight", MessagingServiceSid=SERVICE)
    assert post(client, sms_app, "/twilio/sms", params).status_code == 200
    assert inbox_of(world.other_clinic) == [("Will send it tonight", south.id)]
    assert inbox_of(world.clinic) == []
    help_reply = post(client, sms_app, "/twilio/sms", inbound("SM" + "0f" * 16, "HELP", MessagingServiceSid=SERVICE))
    text = help_reply.get_data(as_text=True)
    assert "South Clinic" in text and "+441234500000" in text and "North" not in text


@pytest.mark.parametrize("latest", ["north", "south"])
def test_a_shared_number_goes_to_the_clinic_that_texted_it_last(sms_app, client, world, shared_phone, latest):
    patients = dict(zip(("north", "south"), shared_phone))
    earlier = "south" if latest == "north" else "north"
    texted(patients[earlier], days_ago=3)  # both clinics texted it in the window...
    texted(patients[latest], days_ago=1)  # ...the reply answers the latest text
    params = inbound("SM" + "c1" * 16, "Sent it", MessagingServiceSid=SERVICE)
    assert post(client, sms_app, "/twilio/sms", params).status_code == 200
    clinics = {"north": world.clinic, "south": world.other_clinic}
    assert inbox_of(clinics[latest]) == [("Sent it", patients[latest].id)]
    assert inbox_of(clinics[earlier]) == []


@pytest.mark.parametrize("history, to_us", [
    ((), True),                                     # neither clinic texted it
    ((("north", 1), ("south", 1)), True),           # both did, to the instant: either could be answered
    ((("south", 1),), False),                       # a text to another number: no conversation of ours
    ((("south", 1, "failed"),), True),              # a text that never left is no conversation
], ids=["no-conversation", "both-at-once", "not-our-sender", "failed-text"])
def test_an_ambiguous_number_goes_to_every_clinic_unmatched(sms_app, client, world, shared_phone, history, to_us):
    patients = dict(zip(("north", "south"), shared_phone))
    now = utcnow()
    for who, days_ago, *status in history:
        texted(patients[who], days_ago=days_ago, status=status[0] if status else "delivered",
               at=now - timedelta(days=days_ago))
    service = SERVICE if to_us else "MG" + "2" * 32
    params = inbound("SM" + "e1" * 16, "Who is this?", MessagingServiceSid=service)
    for _ in range(2):  # delivered twice: still one row per clinic
        assert post(client, sms_app, "/twilio/sms", params).status_code == 200
    assert inbox_of(world.clinic) == inbox_of(world.other_clinic) == [("Who is this?", None)]
    help_reply = post(client, sms_app, "/twilio/sms", inbound("SM" + "e2" * 16, "help", MessagingServiceSid=service))
    text = help_reply.get_data(as_text=True)
    assert "Scar Watch" in text and "North" not in text and "South" not in text and "+44" not in text


def test_a_family_phone_within_one_clinic_is_matched_by_conversation_or_left_unmatched(sms_app, client, world):
    sms_app.config["TWILIO_FROM_NUMBER"] = "+15005550006"  # the To of these texts
    mother, _ = enrol(world.clinic, PHONE)
    son, _ = enrol(world.clinic, PHONE, body_site="back")
    post(client, sms_app, "/twilio/sms", inbound("SM" + "a1" * 16, "Sorry, who?"))
    texted(son, days_ago=2)
    post(client, sms_app, "/twilio/sms", inbound("SM" + "a2" * 16, "Mine is done"))
    assert inbox_of(world.clinic) == [("Sorry, who?", None), ("Mine is done", son.id)]
    assert mother.id < son.id


def test_delivery_status_moves_the_outbox_forward_only(sms_app, client, patient, fake_twilio, world):
    sweep.dispatch(utc(2027, 2, 2, 10))
    row = db.session.execute(select(OutboundMessage)).scalar_one()
    status = {"MessageSid": row.twilio_sid, "AccountSid": fake_twilio.account_sid}
    assert post(client, sms_app, "/twilio/status", dict(status, MessageStatus="delivered")).status_code == 204
    post(client, sms_app, "/twilio/status", dict(status, MessageStatus="sent"))  # late, out of order
    db.session.refresh(row)
    assert row.status == "delivered"
    # An unknown SID is acknowledged and ignored.
    assert post(client, sms_app, "/twilio/status",
                {"MessageSid": "SM" + "c" * 32, "MessageStatus": "delivered"}).status_code == 204


def test_a_failed_delivery_surfaces_for_staff_and_21610_opts_out(sms_app, client, patient, fake_twilio, world):
    sweep.dispatch(utc(2027, 2, 2, 10))
    row = db.session.execute(select(OutboundMessage)).scalar_one()
    post(client, sms_app, "/twilio/status",
         {"MessageSid": row.twilio_sid, "MessageStatus": "undelivered", "ErrorCode": "30003"})
    db.session.refresh(row)
    assert row.status == "failed" and row.error_code == "30003"
    assert queries.failed_messages(world.clinic.id) == [row]
    assert queries.failed_messages(world.other_clinic.id) == []
    post(client, sms_app, "/twilio/status",
         {"MessageSid": row.twilio_sid, "MessageStatus": "failed", "ErrorCode": "21610"})
    db.session.refresh(patient)
    assert patient.opted_out_at is not None


def test_bad_payloads_are_400_not_500(sms_app, client, patient):
    assert post(client, sms_app, "/twilio/sms", {"Body": "hi"}).status_code == 400
    assert post(client, sms_app, "/twilio/status", {"MessageSid": "SM1"}).status_code == 400
    assert post(client, sms_app, "/twilio/status", {"MessageSid": "SM1", "MessageStatus": "failed",
                                                    "ErrorCode": "x"}).status_code == 400


def test_behind_a_proxy_the_public_url_is_still_what_counts(sms_app, client, patient):
    from app import _behind_proxy

    sms_app.config["PROXY_FIX_HOPS"] = 1
    _behind_proxy(sms_app)
    params = inbound("SM" + "e" * 32, "hello")
    forwarded = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}
    assert post(client, sms_app, "/twilio/sms", params, headers=forwarded,
                url="http://evil.example/twilio/sms").status_code == 403
    assert post(client, sms_app, "/twilio/sms", params, headers=forwarded).status_code == 200
