"""Photos of a site, the one-time links patients upload them with, and their analyses."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from followup.db import UTCDateTime, db, utcnow
from recurrence.encoding import ANSWER_KEYS
from registration.modality import MODALITIES  # noqa: F401 - a photo is a phone (clinical) one or a dermoscope's


class PhotoKind(StrEnum):
    BASELINE = "baseline"
    FOLLOWUP = "followup"


class PhotoStatus(StrEnum):
    """queued (the row is the job) → processing (claimed) → done | rejected (reasons for the patient) | failed
    (after the last attempt; a person is asked to look)."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    REJECTED = "rejected"
    FAILED = "failed"


class UploadLink(db.Model):
    """A signed patient link bound to one site; the token's nonce is stored hashed."""

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    nonce_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    uploads: Mapped[int] = mapped_column(Integer, default=0)


class Photo(db.Model):
    # A site's latest photo is one index probe (the overdue worklist asks it for a page of sites).
    __table_args__ = (Index("ix_photo_site_id_received_at", "site_id", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    storage_key: Mapped[str] = mapped_column(String(200))
    original_key: Mapped[Optional[str]] = mapped_column(String(200))  # encrypted original, if kept
    content_type: Mapped[str] = mapped_column(String(40))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    captured_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), default=PhotoStatus.QUEUED, index=True)
    status_detail: Mapped[Optional[str]] = mapped_column(Text)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A queued photo whose last attempt failed waits until then (exponential backoff; followup.analysis.jobs).
    next_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # When the photo was last handed to the job queue (a Celery message); the scheduler sends a queued photo
    # again when its message may have been lost (followup.analysis.jobs.resend_due).
    enqueued_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, index=True)
    upload_link_id: Mapped[Optional[int]] = mapped_column(ForeignKey("upload_link.id"), index=True)
    uploaded_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id"), index=True)
    # Declared by the uploader (clinical | dermoscopy); None: detected from the pixels.
    modality: Mapped[Optional[str]] = mapped_column(String(12))
    # The patient's answers: True, False or None (not answered / not sure).
    grew: Mapped[Optional[bool]]
    itch: Mapped[Optional[bool]]
    bleed: Mapped[Optional[bool]]
    hurt: Mapped[Optional[bool]]
    changed: Mapped[Optional[bool]]
    elevation: Mapped[Optional[bool]]

    site: Mapped["Site"] = relationship(foreign_keys=[site_id])  # noqa: F821
    analyses: Mapped[list["Analysis"]] = relationship(
        back_populates="photo", foreign_keys="Analysis.photo_id", order_by="Analysis.id"
    )

    def answers(self) -> dict[str, Optional[bool]]:
        return {f: getattr(self, f) for f in ANSWER_KEYS}


class Analysis(db.Model):
    """One comparison of a follow-up photo with a reference (the baseline or the previous follow-up)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photo.id"), index=True)
    reference_photo_id: Mapped[Optional[int]] = mapped_column(ForeignKey("photo.id"), index=True)
    comparison: Mapped[str] = mapped_column(String(12))  # baseline | previous
    registered: Mapped[bool] = mapped_column(default=False)
    homography: Mapped[Optional[list[list[float]]]] = mapped_column(JSON)
    alignment_confidence: Mapped[Optional[float]] = mapped_column(Float)
    quality: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    regions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    change_score: Mapped[Optional[float]] = mapped_column(Float)
    recurrence_score: Mapped[Optional[float]] = mapped_column(Float)
    flag: Mapped[bool] = mapped_column(default=False)
    # ``flag`` counting only changed regions in the watched site (each region's ``in_site``); None: older rows.
    site_flag: Mapped[Optional[bool]]
    # The rules the comparison used (clinical | dermoscopy); for a baseline's quality row, what it is.
    modality: Mapped[Optional[str]] = mapped_column(String(12))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    model_version: Mapped[Optional[str]] = mapped_column(String(80))
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    overlays: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # name -> storage key
    # The pair's scale (registration.sticker_detect.pair_scale): mm per follow-up pixel at the sticker, as
    # analyze-batch gives it, and mm per reference pixel (the regions' own, for their area_mm2, diameter_mm,
    # distance_to_scar_mm); scale_source marker | clinic | None (no scale: sizes in pixels only); the reasons
    # say why there is none or where it came from. All None on rows from before scales (issue 15).
    scale_mm_per_px: Mapped[Optional[float]] = mapped_column(Float)
    reference_mm_per_px: Mapped[Optional[float]] = mapped_column(Float)
    scale_source: Mapped[Optional[str]] = mapped_column(String(8))
    scale_reasons: Mapped[Optional[list[str]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    photo: Mapped[Photo] = relationship(back_populates="analyses", foreign_keys=[photo_id])
