"""Clinics, their staff accounts and API tokens."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from flask_login import UserMixin
from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from followup.db import UTCDateTime, db, utcnow

ROLES = ("admin", "dermatologist")


class Clinic(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[Optional[str]] = mapped_column(String(32))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/London")
    # Per-clinic protocol overrides, keyed by protocol name (see followup.records.plans).
    protocol_overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    operating_point: Mapped[str] = mapped_column(String(32), default="sensitivity_first")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    users: Mapped[list["User"]] = relationship(back_populates="clinic")


class User(UserMixin, db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(20))
    phone: Mapped[Optional[str]] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(default=True)
    # In every session cookie too (see get_id): raising it ends every web session of this user at once.
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    clinic: Mapped[Clinic] = relationship(back_populates="users")

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive accounts
        return self.active

    def get_id(self) -> str:
        """What the session cookie holds: the user and their session version (checked on every request)."""
        return f"{self.id}:{self.session_version}"


class ApiToken(db.Model):
    """A bearer token; only its SHA-256 is stored, so a database leak leaks no token."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()
