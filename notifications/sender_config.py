"""`sender_from_config`: the SMS transport the configuration asks for (see CONTRACT.md, "Set-up")."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from notifications.console_sender import ConsoleSender
from notifications.sms import SmsSender
from notifications.twilio_sender import TwilioSender

DEFAULT_TIMEOUT_SECONDS = 10.0

#: Path of the delivery-status webhook (CONTRACT.md), joined to PUBLIC_BASE_URL for the default callback.
STATUS_WEBHOOK_PATH = "/twilio/status"


def sender_from_config(config: Mapping[str, Any]) -> SmsSender:
    """A `TwilioSender` when Twilio credentials are configured, else a `ConsoleSender`.

    Reads ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ``TWILIO_MESSAGING_SERVICE_SID`` or
    ``TWILIO_FROM_NUMBER`` (the service wins when both are set), ``TWILIO_API_BASE_URL``,
    ``TWILIO_TIMEOUT_SECONDS`` (default 10) and ``PUBLIC_BASE_URL`` (messages without their own status
    callback get ``PUBLIC_BASE_URL + /twilio/status``). Empty values count as absent.

    Raises
    ------
    ValueError
        Only one of account SID and auth token is set, or credentials without a sender, or a timeout that
        is not a positive number: half a configuration should stop the app, not silently log messages.
    """
    account_sid = _setting(config, "TWILIO_ACCOUNT_SID")
    auth_token = _setting(config, "TWILIO_AUTH_TOKEN")
    if not account_sid and not auth_token:
        return ConsoleSender()
    if not (account_sid and auth_token):
        raise ValueError("set both TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, or neither to log messages only")
    messaging_service_sid = _setting(config, "TWILIO_MESSAGING_SERVICE_SID")
    from_number = None if messaging_service_sid else _setting(config, "TWILIO_FROM_NUMBER")
    if not (messaging_service_sid or from_number):
        raise ValueError("Twilio credentials are set: also set TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER")
    public_base_url = _setting(config, "PUBLIC_BASE_URL")
    return TwilioSender(
        account_sid=account_sid,
        auth_token=auth_token,
        messaging_service_sid=messaging_service_sid,
        from_number=from_number,
        default_status_callback=public_base_url.rstrip("/") + STATUS_WEBHOOK_PATH if public_base_url else None,
        timeout_seconds=_timeout(config),
        api_base_url=_setting(config, "TWILIO_API_BASE_URL"),
    )


def _setting(config: Mapping[str, Any], key: str) -> Optional[str]:
    value = config.get(key)
    if value is None:
        return None
    return str(value).strip() or None


def _timeout(config: Mapping[str, Any]) -> float:
    raw = config.get("TWILIO_TIMEOUT_SECONDS")
    if raw is None or str(raw).strip() == "":
        return DEFAULT_TIMEOUT_SECONDS
    try:
        timeout = float(raw)
    except ValueError:
        raise ValueError(f"TWILIO_TIMEOUT_SECONDS must be a number of seconds, got {raw!r}") from None
    if timeout <= 0:
        raise ValueError(f"TWILIO_TIMEOUT_SECONDS must be positive, got {raw!r}")
    return timeout
