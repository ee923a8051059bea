"""Alerts in the dermatologists' triage queue."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from followup.db import UTCDateTime, db, utcnow

ALERT_STATUSES = ("open", "claimed", "resolved")
OUTCOMES = ("no_change", "benign_change", "rephoto", "visit", "biopsy")
# 1 is the most urgent.
PRIORITIES = (1, 2, 3)


class Alert(db.Model):
    __table_args__ = (
        # The queue: open alerts of a clinic, most urgent first.
        Index("ix_alert_queue", "clinic_id", "status", "priority", "recurrence_score", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    photo_id: Mapped[Optional[int]] = mapped_column(ForeignKey("photo.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="change")  # change | unreadable | no_photo
    priority: Mapped[int] = mapped_column(Integer, index=True)
    recurrence_score: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)
    claimed_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id"), index=True)
    claimed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    outcome: Mapped[Optional[str]] = mapped_column(String(20))
    resolved_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id"), index=True)
    resolved_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    note: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    site: Mapped["Site"] = relationship()  # noqa: F821
