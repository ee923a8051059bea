"""Patients and the excision sites that are followed up."""
from __future__ import annotations

from datetime import date, datetime
from typing import Optional

from sqlalchemy import JSON, Date, Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from followup.db import UTCDateTime, db, utcnow

# Who outlined the scar on the baseline: proposed by the pipeline, or drawn or tapped by staff.
OUTLINE_SOURCES = ("auto", "staff")


class Patient(db.Model):
    # The record's own identifier (a hospital number): a FHIR enrolment of the same patient finds this row.
    __table_args__ = (UniqueConstraint("clinic_id", "identifier_system", "identifier_value",
                                       name="uq_patient_clinic_identifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(32), index=True)  # E.164
    date_of_birth: Mapped[Optional[date]] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/London")
    sms_consent: Mapped[bool] = mapped_column(default=False)
    opted_out_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    identifier_system: Mapped[Optional[str]] = mapped_column(String(200))
    identifier_value: Mapped[Optional[str]] = mapped_column(String(100))

    sites: Mapped[list["Site"]] = relationship(back_populates="patient", order_by="Site.id")

    @property
    def can_receive_sms(self) -> bool:
        return self.sms_consent and self.opted_out_at is None


class Site(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    body_site: Mapped[str] = mapped_column(String(120))
    diagnosis: Mapped[str] = mapped_column(String(20))
    stage: Mapped[Optional[str]] = mapped_column(String(20))
    excision_date: Mapped[date] = mapped_column(Date)
    # The dermatologist responsible; alerts for this site notify them.
    dermatologist_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id"), index=True)
    closed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The scar outlined on a baseline photo: [[x, y], ...] in that photo's pixels (see followup.intake.outlines).
    # It applies only while that photo is the site's baseline. (use_alter: photo refers to site too.)
    outline_polygon: Mapped[Optional[list[list[float]]]] = mapped_column(JSON)
    outline_source: Mapped[Optional[str]] = mapped_column(String(10))  # auto | staff
    outline_photo_id: Mapped[Optional[int]] = mapped_column(ForeignKey("photo.id", use_alter=True), index=True)
    # What staff should know about the outline (e.g. a new baseline replaced the one they outlined on).
    outline_note: Mapped[Optional[str]] = mapped_column(String(300))
    # The scar's length measured in clinic at enrolment (mm): with the outline, the baseline's scale when a photo
    # has no reference sticker (scale_source "clinic"; followup.intake.outlines.clinic_mm_per_px).
    scar_length_mm: Mapped[Optional[float]] = mapped_column(Float)

    patient: Mapped[Patient] = relationship(back_populates="sites")

    def years_since_surgery(self, at: date) -> float:
        """Years from the excision to ``at`` (negative before it): what the model and the outcome export read."""
        return (at - self.excision_date).days / 365.25
