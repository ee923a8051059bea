"""`ConsoleSender`: the transport used when no Twilio credentials are configured (development, demos)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Optional

from notifications.sms import OutgoingSms, SendResult

logger = logging.getLogger(__name__)


class ConsoleSender:
    """Writes each message to the log and sends nothing; every answer is ``not_sent`` and not retryable."""

    def send(self, message: OutgoingSms) -> SendResult:
        """Log `message` as its ``log_body`` shows it (a live upload link never reaches the log)."""
        logger.info(
            "SMS not sent (no Twilio credentials) to=%s key=%s body=%r",
            message.to,
            message.idempotency_key,
            message.body if message.log_body is None else message.log_body,
        )
        return SendResult(status="not_sent", error_message="no Twilio credentials configured")

    def lookup(self, message: OutgoingSms, *, attempted_at: datetime, sid: Optional[str] = None) -> SendResult:
        """Nothing ever leaves this sender, so every earlier attempt is ``not_sent``."""
        return SendResult(status="not_sent", error_message="no Twilio credentials configured")
