"""Pure helpers for Twilio's webhooks (``POST /twilio/sms`` and ``POST /twilio/status``, CONTRACT.md):
signature checking, the URL Twilio signed, inbound keywords, delivery statuses. No Flask, no database."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Mapping, Optional, Union

from twilio.request_validator import RequestValidator

from notifications.sms import SendResult
from notifications.twilio_statuses import result_from_twilio

OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})


class InboundIntent(StrEnum):
    """What an inbound SMS asks for."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    TEXT = "text"


#: Twilio's Advanced Opt-Out reports the keyword class it matched (custom keywords and languages included).
_INTENT_FROM_OPT_OUT_TYPE = {"STOP": InboundIntent.OPT_OUT, "START": InboundIntent.OPT_IN, "HELP": InboundIntent.HELP}


@dataclass(frozen=True)
class InboundSms:
    """An SMS a patient or dermatologist sent to us."""

    message_sid: str
    from_number: str
    to_number: str
    body: str
    intent: InboundIntent


def verify_twilio_signature(auth_token: str, url: str, params: Mapping[str, Any], signature: Optional[str]) -> bool:
    """Whether `signature` (the ``X-Twilio-Signature`` header) is Twilio's signature of this request.

    Parameters
    ----------
    auth_token : str
        The account's auth token, the signing key. An empty token verifies nothing: anyone could sign with it.
    url : str
        The URL Twilio requested, built by `webhook_url` from ``PUBLIC_BASE_URL`` (behind a proxy the URL the
        app sees differs from the one Twilio signed, and a forger controls the Host header).
    params : mapping
        The POST form fields (a Flask ``request.form`` MultiDict keeps repeated fields).
    signature : str or None
        The header's value; absent or empty fails.
    """
    if not auth_token or not signature:
        return False
    return RequestValidator(auth_token).validate(url, params, signature)


def webhook_url(public_base_url: str, path: str, query_string: Union[str, bytes] = "") -> str:
    """The URL Twilio signed: ``PUBLIC_BASE_URL`` + the request path (+ ``?query`` when there is one).

    Twilio signs the full URL it was given, query string included, e.g. ``webhook_url(base, request.path,
    request.query_string)``.
    """
    if isinstance(query_string, bytes):
        query_string = query_string.decode("utf-8")
    url = public_base_url.rstrip("/") + "/" + path.lstrip("/")
    return f"{url}?{query_string}" if query_string else url


def classify_inbound(body: str, opt_out_type: Optional[str] = None) -> InboundIntent:
    """The intent of an inbound SMS `body`.

    Twilio's ``OptOutType`` parameter (STOP, START or HELP), when present, wins: Twilio has already acted on it.
    Otherwise the whole body, ignoring case, surrounding spaces and trailing punctuation, must be one
    keyword — as with Twilio's own keyword handling, "stop by on Tuesday" is free text.
    """
    if opt_out_type:
        intent = _INTENT_FROM_OPT_OUT_TYPE.get(opt_out_type.strip().upper())
        if intent is not None:
            return intent
    word = body.strip().rstrip(".!").strip().upper()
    if word in OPT_OUT_KEYWORDS:
        return InboundIntent.OPT_OUT
    if word in OPT_IN_KEYWORDS:
        return InboundIntent.OPT_IN
    if word in HELP_KEYWORDS:
        return InboundIntent.HELP
    return InboundIntent.TEXT


def parse_inbound_sms(params: Mapping[str, Any]) -> InboundSms:
    """An `InboundSms` from the form fields of ``POST /twilio/sms``.

    Raises
    ------
    ValueError
        ``MessageSid`` or ``From`` is missing.
    """
    message_sid, from_number = params.get("MessageSid"), params.get("From")
    if not message_sid or not from_number:
        raise ValueError("an inbound SMS webhook needs MessageSid and From")
    body = params.get("Body") or ""
    return InboundSms(
        message_sid=message_sid,
        from_number=from_number,
        to_number=params.get("To") or "",
        body=body,
        intent=classify_inbound(body, params.get("OptOutType")),
    )


def parse_status_callback(params: Mapping[str, Any]) -> SendResult:
    """The `SendResult` that a ``POST /twilio/status`` callback reports (``MessageSid``, ``MessageStatus``,
    ``ErrorCode``): match it to the outbox by `SendResult.sid`.

    Raises
    ------
    ValueError
        ``MessageSid`` or ``MessageStatus`` is missing, or ``ErrorCode`` is not a number.
    """
    sid, status = params.get("MessageSid"), params.get("MessageStatus")
    if not sid or not status:
        raise ValueError("a status callback needs MessageSid and MessageStatus")
    raw_code = params.get("ErrorCode")
    try:
        error_code = int(raw_code) if raw_code else None
    except ValueError:
        raise ValueError(f"ErrorCode must be a number, got {raw_code!r}") from None
    return result_from_twilio(sid, status, error_code)
