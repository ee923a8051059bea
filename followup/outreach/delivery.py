"""What became of a text after it left: unknown sends settled by a lookup at Twilio, and Twilio's status
callbacks moving a row on (`followup.outreach.outbox` sends; this module only reads back)."""
from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy import select, update

from followup.db import db, utcnow
from followup.models import OutboundMessage
from followup.models.messages import OutboxStatus
from followup.outreach.outbox import apply_result, outgoing, sender
from notifications import SendResult

log = logging.getLogger(__name__)

#: A ``sending`` row older than this belongs to a process that died mid-call: reconcile it, never resend.
STALE_SENDING = timedelta(minutes=10)


def reconcile(now: Optional[datetime] = None, *, limit: int = 100) -> Counter:
    """Settle ``unknown`` rows (and ``sending`` rows left by a dead process) by looking them up at Twilio."""
    now = now or utcnow()
    stale = (OutboundMessage.status == OutboxStatus.SENDING, OutboundMessage.attempted_at < utcnow() - STALE_SENDING)
    if db.session.execute(select(OutboundMessage.id).where(*stale).limit(1)).first() is not None:
        db.session.execute(
            update(OutboundMessage).where(*stale)
            .values(status=OutboxStatus.UNKNOWN, error_message="the sending process stopped mid-call")
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    rows = list(db.session.execute(
        select(OutboundMessage).where(OutboundMessage.status == OutboxStatus.UNKNOWN)
        .order_by(OutboundMessage.attempted_at, OutboundMessage.id).limit(limit)
    ).scalars())
    counts: Counter = Counter()
    if not rows:
        db.session.commit()
        return counts
    for row_id in [row.id for row in rows]:
        try:
            counts.update(_reconcile_one(row_id, now))
        except Exception:  # noqa: BLE001 - one row that cannot be looked up must not stop the others
            log.exception("outbox: message %s could not be reconciled; the next sweep tries again", row_id)
            db.session.rollback()
            counts["errors"] += 1
    return counts


def _reconcile_one(row_id: int, now: datetime) -> Counter:
    counts: Counter = Counter()
    row = db.session.get(OutboundMessage, row_id)
    try:
        message = outgoing(row)
    except ValueError:
        return counts
    attempted_at = row.attempted_at or row.created_at
    result = sender().lookup(message, attempted_at=attempted_at, sid=row.twilio_sid)
    if result.status == "unknown":
        counts["still_unknown"] += 1
        return counts
    # Another sweep may have settled it meanwhile: write only over 'unknown'.
    fresh = db.session.execute(
        select(OutboundMessage).where(OutboundMessage.id == row.id, OutboundMessage.status == OutboxStatus.UNKNOWN)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if fresh is None:
        return counts
    if result.status == "not_sent":
        fresh.status, fresh.next_attempt_at = OutboxStatus.PENDING, None  # provably nothing at Twilio: send again
        fresh.error_message = result.error_message
        counts["resend"] += 1
    else:
        counts["reconciled_" + apply_result(fresh, result, now)] += 1
    db.session.commit()
    return counts


_RANK = {OutboxStatus.PENDING: 0, OutboxStatus.SENDING: 0, OutboxStatus.UNKNOWN: 0, OutboxStatus.NOT_SENT: 0,
         OutboxStatus.SENT: 1, OutboxStatus.DELIVERED: 2, OutboxStatus.FAILED: 2, OutboxStatus.CANCELLED: 0}


def record_delivery(sid: str, twilio_status: str, result: SendResult) -> Optional[OutboundMessage]:
    """A status callback: move the outbox row on (never backwards: callbacks arrive out of order). An opt-out
    that Twilio reports with it (``result.opted_out``) is the caller's to apply."""
    row = db.session.execute(select(OutboundMessage).where(OutboundMessage.twilio_sid == sid)).scalar_one_or_none()
    if row is None:
        return None
    if result.status == "failed":
        new = OutboxStatus.FAILED
    elif twilio_status in ("delivered", "read"):
        new = OutboxStatus.DELIVERED
    elif result.status in ("queued", "sent"):
        new = OutboxStatus.SENT
    else:
        return row
    if _RANK.get(new, 0) >= _RANK.get(row.status, 0) and row.status != new:
        row.status = new
        row.sent_at = row.sent_at or utcnow()
        if new == OutboxStatus.FAILED:
            row.error_code = str(result.error_code) if result.error_code is not None else row.error_code
            row.error_message = result.error_message or f"Twilio reports {twilio_status}"
    return row
