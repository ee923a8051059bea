"""What every SMS transport accepts and answers: `OutgoingSms`, `SendResult` and the `SmsSender` interface.

The transport never decides who is due and never touches the database; the caller (the outbox) stores the
message, calls `SmsSender.send`, stores the `SendResult`, and acts on it:

========== ====================================================================================================
status     meaning
========== ====================================================================================================
queued     The provider accepted the message (`sid` set); delivery still pending, final state arrives by the
           status callback or `lookup`.
sent       The provider reports the message sent or delivered (`sid` set).
failed     No delivery. If `retryable`, no message from this attempt exists at the provider (or the one that
           exists has failed), so sending again later cannot reach the patient twice; if not, sending again
           will not help (bad number, opted out, …).
not_sent   No message exists at the provider. From `ConsoleSender`: deliberately not sent (no credentials),
           `retryable` False. From `lookup`: the earlier attempt provably created nothing, `retryable` True.
unknown    It cannot be told whether the provider created the message (a timeout). Never send again on this
           answer: call `lookup` later, and send again only when it answers `not_sent` or a retryable
           `failed`. `retryable` is False.
========== ====================================================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Optional, Protocol, runtime_checkable

SendStatus = Literal["sent", "queued", "failed", "not_sent", "unknown"]

#: Twilio's error code for "Attempt to send to unsubscribed recipient" (the patient texted STOP).
OPTED_OUT_ERROR_CODE = 21610

#: Twilio rejects longer bodies (error 21617).
MAX_BODY_CHARS = 1600

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


@dataclass(frozen=True)
class OutgoingSms:
    """One logical SMS.

    Parameters
    ----------
    to : str
        Recipient in E.164 form, e.g. ``"+447700900123"``.
    body : str
        The text. Reconciliation after an unknown outcome finds the message by recipient, sender and exact
        body, so callers should make bodies differ between logical messages (a reminder's one-time link does).
    idempotency_key : str
        Unique per logical message (e.g. ``"outbox:1234"``); sending the same key again is the same message.
    status_callback : str or None
        URL Twilio posts delivery status to; None uses the sender's default.
    log_body : str or None
        The text as a log may show it, secrets hidden (a patient's upload link works without a password);
        None when the body holds none. Senders never log ``body`` itself.
    """

    to: str
    body: str
    idempotency_key: str
    status_callback: Optional[str] = None
    log_body: Optional[str] = None

    def __post_init__(self) -> None:
        if not _E164.match(self.to):
            raise ValueError(f"'to' must be an E.164 number such as +447700900123, got {self.to!r}")
        if not self.body.strip():
            raise ValueError("'body' must not be empty")
        if len(self.body) > MAX_BODY_CHARS:
            raise ValueError(f"'body' has {len(self.body)} characters; Twilio accepts at most {MAX_BODY_CHARS}")
        if not self.idempotency_key:
            raise ValueError("'idempotency_key' must not be empty")


@dataclass(frozen=True)
class SendResult:
    """What became of one `OutgoingSms`; see the module docstring for what each status asks the caller to do."""

    status: SendStatus
    sid: Optional[str] = None
    error_code: Optional[int] = None
    error_message: Optional[str] = None
    retryable: bool = False
    opted_out: bool = False


@runtime_checkable
class SmsSender(Protocol):
    """An SMS transport: Twilio in production, the console without credentials."""

    def send(self, message: OutgoingSms) -> SendResult:
        """Send `message` once; never raises for provider or network trouble, answers with a `SendResult`."""
        ...

    def lookup(self, message: OutgoingSms, *, attempted_at: datetime, sid: Optional[str] = None) -> SendResult:
        """Tell what became of an earlier `send` of `message` that started at `attempted_at` (timezone-aware).

        With `sid` (from an earlier result or a status callback) the message is fetched directly; without it,
        it is searched for. Answers ``not_sent`` only when the attempt provably created nothing.
        """
        ...
