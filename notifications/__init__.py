"""SMS transport: what to send (`OutgoingSms`), what became of it (`SendResult`), the senders, and the pure
helpers the Twilio webhooks use. No decisions about who is due; no database."""

from notifications.console_sender import ConsoleSender
from notifications.sender_config import sender_from_config
from notifications.sms import OutgoingSms, SendResult, SendStatus, SmsSender
from notifications.twilio_sender import RetryPolicy, TwilioSender

__all__ = [
    "ConsoleSender",
    "OutgoingSms",
    "RetryPolicy",
    "SendResult",
    "SendStatus",
    "SmsSender",
    "TwilioSender",
    "sender_from_config",
]
