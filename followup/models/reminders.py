"""Reminder rows the sweep works from, the one-SMS-per-patient-per-day ledger, and the scheduler's lock.

The database is the source of truth: a reminder is sent because its row is due, not because a timer fired.
"""
from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Optional

from sqlalchemy import Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from followup.db import UTCDateTime, db, utcnow


class ReminderKind(StrEnum):
    """In the order the sweep prefers them when two are due for one patient on one day."""

    PHOTO_ESCALATION = "photo_escalation"  # no photo after the re-reminder: on the clinic's worklist (no SMS)
    PHOTO_DUE = "photo_due"  # the day's request, with a fresh one-time upload link
    PHOTO_AGAIN = "photo_again"  # one re-reminder when nothing came
    VISIT_DAY_BEFORE = "visit_day_before"  # the clinic visit is tomorrow
    VISIT_TWO_WEEKS = "visit_two_weeks"  # the clinic visit is in two weeks
    PHOTO_HEADS_UP = "photo_heads_up"  # a photo will be asked for in a few days


class ReminderStatus(StrEnum):
    """pending → claimed (by a sweep, within its transaction) → queued (its SMS is in the outbox) | escalated |
    cancelled (nothing more to ask) | expired (too late)."""

    PENDING = "pending"
    CLAIMED = "claimed"
    QUEUED = "queued"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Reminder(db.Model):
    __table_args__ = (
        UniqueConstraint("plan_item_id", "kind"),  # a plan item's reminders are planned once, even by two sweeps
        Index("ix_reminder_sweep", "status", "due_at"),  # the sweep: pending rows due by now, oldest first
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_item_id: Mapped[int] = mapped_column(ForeignKey("plan_item.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # earliest send time (UTC)
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)  # not sent by then: expired
    status: Mapped[str] = mapped_column(String(12), default=ReminderStatus.PENDING, index=True)
    detail: Mapped[Optional[str]] = mapped_column(String(200))
    outbound_message_id: Mapped[Optional[int]] = mapped_column(ForeignKey("outbound_message.id"), index=True)
    alert_id: Mapped[Optional[int]] = mapped_column(ForeignKey("alert.id"), index=True)
    # How many times the plan item was re-dated after this reminder had finished (each time it is planned
    # again for the new date); part of its outbox key, so the reminder of a new date is a new message.
    cycle: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class PatientSmsDay(db.Model):
    """The patient's one text of a local calendar day; the unique key makes a second one impossible.

    Its owner is a reminder, or another text to the patient that keeps the same rule (a retake request).
    """

    __table_args__ = (UniqueConstraint("patient_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    day: Mapped[date] = mapped_column(Date, index=True)  # in the patient's timezone
    reminder_id: Mapped[Optional[int]] = mapped_column(ForeignKey("reminder.id"), index=True)
    outbound_message_id: Mapped[Optional[int]] = mapped_column(ForeignKey("outbound_message.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SchedulerLock(db.Model):
    """A lease: the process whose heartbeat is fresh runs the scheduled jobs; others do nothing."""

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
