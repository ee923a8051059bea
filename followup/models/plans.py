"""A site's follow-up plan: clinic visits and patient photo requests with due dates."""
from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Optional

from sqlalchemy import Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from followup.db import UTCDateTime, db, utcnow


class PlanItemKind(StrEnum):
    VISIT = "visit"  # a clinic visit
    PHOTO = "photo"  # a photo the patient is asked for


class PlanItemStatus(StrEnum):
    """pending → done (a photo came, a visit took place) | missed (the photo request went unanswered) |
    cancelled."""

    PENDING = "pending"
    DONE = "done"
    MISSED = "missed"
    CANCELLED = "cancelled"


ITEM_KINDS = tuple(PlanItemKind)
ITEM_STATUSES = tuple(PlanItemStatus)


class FollowUpPlan(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True, unique=True)
    protocol: Mapped[str] = mapped_column(String(60))
    source: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    items: Mapped[list["PlanItem"]] = relationship(
        back_populates="plan", order_by="PlanItem.due_date", cascade="all, delete-orphan"
    )


class PlanItem(db.Model):
    # Pending items in due order: the overdue worklist reads a page of them, not every past item.
    __table_args__ = (Index("ix_plan_item_status_due_date", "status", "due_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("follow_up_plan.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    due_date: Mapped[date] = mapped_column(Date, index=True)
    status: Mapped[str] = mapped_column(String(12), default=PlanItemStatus.PENDING, index=True)
    completed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    plan: Mapped[FollowUpPlan] = relationship(back_populates="items")
