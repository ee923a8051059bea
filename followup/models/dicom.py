"""Each photo's push to the hospital's DICOMweb archive (STOW-RS), when ``DICOMWEB_URL`` is set."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Optional

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from followup.db import UTCDateTime, db, utcnow


class DicomPushState(StrEnum):
    """pending (waiting for its next try) → sent | failed (gave up after the last try)."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


DICOM_PUSH_STATES = tuple(DicomPushState)


class DicomPush(db.Model):
    __table_args__ = (Index("ix_dicom_push_sweep", "state", "next_try_at"),)  # the sweep: pending rows due by now

    id: Mapped[int] = mapped_column(primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photo.id"), unique=True, index=True)
    state: Mapped[str] = mapped_column(String(10), default=DicomPushState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
