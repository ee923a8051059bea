"""How Twilio's message statuses and error codes read as a `SendResult` (for lookups and status callbacks)."""

from __future__ import annotations

from typing import Dict, Optional

from notifications.sms import OPTED_OUT_ERROR_CODE, SendResult, SendStatus

_STATUS_FROM_TWILIO: Dict[str, SendStatus] = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "sent",
    "read": "sent",
    "partially_delivered": "sent",
    "failed": "failed",
    "undelivered": "failed",
    "canceled": "failed",
}

#: Twilio error codes after which sending the same message to the same number again cannot succeed.
PERMANENT_ERROR_CODES = frozenset(
    {
        21211,  # invalid 'To' number
        OPTED_OUT_ERROR_CODE,  # 21610: recipient replied STOP
        21612,  # 'To' number cannot be reached from this sender
        21614,  # 'To' number is not a mobile number
        30004,  # message blocked by the recipient or carrier
        30005,  # unknown destination handset
        30006,  # landline or unreachable carrier
        30007,  # filtered by the carrier as spam
    }
)


def result_from_twilio(
    sid: Optional[str], twilio_status: Optional[str], error_code: Optional[int], error_message: Optional[str] = None
) -> SendResult:
    """The `SendResult` for a message Twilio reports in `twilio_status` (``queued``, ``delivered``, …).

    A status this table does not know reads as ``unknown``; a failed message is retryable unless it was
    canceled or its error code is permanent.
    """
    status = _STATUS_FROM_TWILIO.get(twilio_status or "", "unknown")
    return SendResult(
        status=status,
        sid=sid,
        error_code=error_code,
        error_message=error_message,
        retryable=status == "failed" and twilio_status != "canceled" and error_code not in PERMANENT_ERROR_CODES,
        opted_out=error_code == OPTED_OUT_ERROR_CODE,
    )
