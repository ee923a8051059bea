"""SMS outbox and inbox. The outbox row exists before any send, so nothing is sent twice."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Optional

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from followup.db import UTCDateTime, db, utcnow


class OutboxStatus(StrEnum):
    """pending → sending (claimed, committed before the call) → sent → delivered, or failed; not_sent (no
    credentials, or nobody to text); unknown (a timeout: reconciled, never resent blindly); cancelled
    (withdrawn before Twilio accepted it: opt-out, photo received, too late to be useful)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"


class OutboundMessage(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    patient_id: Mapped[Optional[int]] = mapped_column(ForeignKey("patient.id"), index=True)
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    to: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(12), default=OutboxStatus.PENDING, index=True)
    twilio_sid: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    error_code: Mapped[Optional[str]] = mapped_column(String(20))
    error_message: Mapped[Optional[str]] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the latest send began (real UTC time): a reconciling lookup searches Twilio from here.
    attempted_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, index=True)
    # A retryable failure waits until then (the sweep's clock) before the next attempt.
    next_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class InboundMessage(db.Model):
    """A text received, one row per clinic inbox it went to (see `followup.outreach.inbound`): a text that may be for
    several clinics goes to each of them, unmatched; one for nobody's number is kept once without a clinic."""

    __table_args__ = (
        UniqueConstraint("twilio_sid", "clinic_id", name="uq_inbound_message_twilio_sid_clinic_id"),
        # The constraint above treats NULL clinics as distinct: this keeps a clinic-less text unique too.
        Index("uq_inbound_message_twilio_sid_unrouted", "twilio_sid", unique=True,
              sqlite_where=text("clinic_id IS NULL"), postgresql_where=text("clinic_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[Optional[int]] = mapped_column(ForeignKey("clinic.id"), index=True)
    patient_id: Mapped[Optional[int]] = mapped_column(ForeignKey("patient.id"), index=True)
    twilio_sid: Mapped[str] = mapped_column(String(64))
    from_number: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    intent: Mapped[str] = mapped_column(String(12))  # opt_out | opt_in | help | text
    handled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
