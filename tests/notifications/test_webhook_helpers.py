"""Signature checking, the signed URL, inbound keywords and status callbacks (`notifications.webhooks`)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from werkzeug.datastructures import MultiDict

from notifications.webhooks import (
    InboundIntent,
    classify_inbound,
    parse_inbound_sms,
    parse_status_callback,
    verify_twilio_signature,
    webhook_url,
)

TOKEN = "12345"
URL = "https://scarwatch.test/twilio/sms"
PARAMS = {"MessageSid": "SM" + "1" * 32, "From": "+447700900123", "To": "+447700900999", "Body": "STOP"}


def twilio_signature(token: str, url: str, params: dict) -> str:
    """Twilio's documented scheme, written out independently of the library under test."""
    payload = url + "".join(key + params[key] for key in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def test_accepts_a_correctly_signed_request():
    assert verify_twilio_signature(TOKEN, URL, PARAMS, twilio_signature(TOKEN, URL, PARAMS))


def test_accepts_flask_form_multidict():
    form = MultiDict(PARAMS)

    assert verify_twilio_signature(TOKEN, URL, form, twilio_signature(TOKEN, URL, PARAMS))


@pytest.mark.parametrize(
    ("token", "url", "params", "signature"),
    [
        (TOKEN, URL, PARAMS, None),
        (TOKEN, URL, PARAMS, ""),
        (TOKEN, URL, {**PARAMS, "Body": "START"}, twilio_signature(TOKEN, URL, PARAMS)),
        (TOKEN, "http://10.0.0.5:5000/twilio/sms", PARAMS, twilio_signature(TOKEN, URL, PARAMS)),
        (TOKEN, URL, PARAMS, twilio_signature("another-token", URL, PARAMS)),
        ("", URL, PARAMS, twilio_signature("", URL, PARAMS)),
    ],
    ids=["unsigned", "empty-signature", "tampered-body", "other-url", "forged-with-other-token", "no-token"],
)
def test_rejects_unsigned_and_forged_requests(token, url, params, signature):
    assert not verify_twilio_signature(token, url, params, signature)


@pytest.mark.parametrize(
    ("base", "path", "query", "expected"),
    [
        ("https://scarwatch.test", "/twilio/sms", "", "https://scarwatch.test/twilio/sms"),
        ("https://scarwatch.test/", "/twilio/status", b"", "https://scarwatch.test/twilio/status"),
        ("https://clinic.example/scar", "/twilio/sms", b"a=1&b=2", "https://clinic.example/scar/twilio/sms?a=1&b=2"),
    ],
)
def test_webhook_url_joins_public_base_and_path(base, path, query, expected):
    assert webhook_url(base, path, query) == expected


@pytest.mark.parametrize(
    ("body", "opt_out_type", "intent"),
    [
        ("STOP", None, InboundIntent.OPT_OUT),
        ("stop", None, InboundIntent.OPT_OUT),
        ("  Stop. ", None, InboundIntent.OPT_OUT),
        ("STOPALL", None, InboundIntent.OPT_OUT),
        ("unsubscribe", None, InboundIntent.OPT_OUT),
        ("Cancel", None, InboundIntent.OPT_OUT),
        ("END", None, InboundIntent.OPT_OUT),
        ("quit!", None, InboundIntent.OPT_OUT),
        ("START", None, InboundIntent.OPT_IN),
        ("unstop", None, InboundIntent.OPT_IN),
        ("HELP", None, InboundIntent.HELP),
        ("info", None, InboundIntent.HELP),
        ("stop by on Tuesday?", None, InboundIntent.TEXT),
        ("My scar looks red", None, InboundIntent.TEXT),
        ("", None, InboundIntent.TEXT),
        ("ARRET", "STOP", InboundIntent.OPT_OUT),
        ("yes please", "START", InboundIntent.OPT_IN),
        ("aide", "help", InboundIntent.HELP),
        ("STOP", "SOMETHING-NEW", InboundIntent.OPT_OUT),
    ],
)
def test_keyword_table(body, opt_out_type, intent):
    assert classify_inbound(body, opt_out_type) is intent


def test_parse_inbound_sms():
    sms = parse_inbound_sms({**PARAMS, "Body": "Hello, is the photo OK?"})

    assert (sms.message_sid, sms.from_number, sms.to_number) == (PARAMS["MessageSid"], "+447700900123", "+447700900999")
    assert (sms.body, sms.intent) == ("Hello, is the photo OK?", InboundIntent.TEXT)
    with pytest.raises(ValueError, match="MessageSid and From"):
        parse_inbound_sms({"Body": "STOP"})


@pytest.mark.parametrize(
    ("params", "status", "retryable", "opted_out"),
    [
        ({"MessageStatus": "delivered"}, "sent", False, False),
        ({"MessageStatus": "sent"}, "sent", False, False),
        ({"MessageStatus": "queued"}, "queued", False, False),
        ({"MessageStatus": "undelivered", "ErrorCode": "30003"}, "failed", True, False),
        ({"MessageStatus": "failed", "ErrorCode": "21610"}, "failed", False, True),
    ],
)
def test_parse_status_callback(params, status, retryable, opted_out):
    result = parse_status_callback({"MessageSid": "SM1", **params})

    assert (result.sid, result.status, result.retryable, result.opted_out) == ("SM1", status, retryable, opted_out)


@pytest.mark.parametrize("params", [{"MessageSid": "SM1"}, {"MessageStatus": "sent"},
                                    {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "x"}])
def test_parse_status_callback_rejects_incomplete_callbacks(params):
    with pytest.raises(ValueError):
        parse_status_callback(params)
