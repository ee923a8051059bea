"""Alerts in the dermatologists' triage queue."""
from __future__ import annotations

from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Optional

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from followup.db import UTCDateTime, db, utcnow

OUTCOMES = ("no_change", "benign_change", "rephoto", "visit", "biopsy")


class AlertStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


class AlertKind(StrEnum):
    CHANGE = "change"  # the pipeline found a change that may be a recurrence
    PATIENT_REPORT = "patient_report"  # no worrying change, but the patient's answers are
    UNREADABLE = "unreadable"  # photos the pipeline could not read, again and again
    NEEDS_REVIEW = "needs_review"  # a photo whose analysis failed: a person looks at it
    NO_PHOTO = "no_photo"  # the photo request went unanswered (the reminder sweep's escalation)


class AlertPriority(IntEnum):
    """Lower is more urgent: the queue sorts by it, and only URGENT texts a dermatologist at once."""

    URGENT = 1
    HIGH = 2
    ROUTINE = 3


#: How long an alert may wait before it counts as overdue, by priority.
RESPONSE_TARGET = {AlertPriority.URGENT: timedelta(days=2), AlertPriority.HIGH: timedelta(days=7),
                   AlertPriority.ROUTINE: timedelta(days=14)}

# One unresolved alert per site, kind and photo (a job run twice, two sweeps escalating at once: one alert).
# A site's photo-less alerts (``no_photo``: the missed photo request) are one per site and kind. Two partial
# indexes, because NULL photo ids never collide in a unique index; raise_alert keys alerts the same way.
_OPEN = "status <> 'resolved'"
OPEN_PER_PHOTO = f"{_OPEN} AND photo_id IS NOT NULL"
OPEN_PER_SITE = f"{_OPEN} AND photo_id IS NULL"


class Alert(db.Model):
    __table_args__ = (
        # The queue: open alerts of a clinic, most urgent first.
        Index("ix_alert_queue", "clinic_id", "status", "priority", "recurrence_score", "created_at"),
        Index("uq_alert_open_photo", "site_id", "kind", "photo_id", unique=True,
              sqlite_where=text(OPEN_PER_PHOTO), postgresql_where=text(OPEN_PER_PHOTO)),
        Index("uq_alert_open_site", "site_id", "kind", unique=True,
              sqlite_where=text(OPEN_PER_SITE), postgresql_where=text(OPEN_PER_SITE)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    photo_id: Mapped[Optional[int]] = mapped_column(ForeignKey("photo.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default=AlertKind.CHANGE)
    priority: Mapped[int] = mapped_column(Integer, index=True)
    recurrence_score: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(10), default=AlertStatus.OPEN, index=True)
    claimed_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id"), index=True)
    claimed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    outcome: Mapped[Optional[str]] = mapped_column(String(20))
    resolved_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id"), index=True)
    resolved_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    note: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    site: Mapped["Site"] = relationship()  # noqa: F821
