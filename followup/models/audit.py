"""Who read or changed what, when, from where — and which patients each event showed."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from followup.db import UTCDateTime, db, utcnow


class AuditEvent(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id"), index=True)
    actor: Mapped[str] = mapped_column(String(80))  # "user:3", "link:12", "system", "cli", "anonymous"
    action: Mapped[str] = mapped_column(String(40), index=True)
    record_type: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[Optional[int]] = mapped_column(Integer)
    ip: Mapped[Optional[str]] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    subjects: Mapped[list["AuditSubject"]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class AuditSubject(db.Model):
    """A patient whose data an audit event showed or changed (one row per patient a list view showed).

    The primary key leads with the patient, so "who saw patient X", newest first, is one index range scan."""

    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audit_event.id"), primary_key=True, index=True)
