"""One pass of the reminder and escalation sweep (``flask --app app reminders dispatch``, the scheduler's
minute), and the outbox delivery that the sweep, the scheduler and the ``messages`` workers share."""
from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Optional

from followup.db import db, utcnow
from followup.outreach import consent, delivery, outbox
from followup.outreach.due import process_due
from followup.outreach.reminders import plan_reminders
from followup.outreach.rules import reminder_guard
from followup.triage import alerts
from followup.triage.notify import queue_digests

log = logging.getLogger(__name__)


def deliver_outbox(now: Optional[datetime] = None) -> Counter:
    """Send what is due in the outbox under the patient rules; a number Twilio reports as opted out is opted
    out here, in the transaction that stores the send's result."""
    return outbox.deliver_pending(now, guard=reminder_guard, on_opt_out=_opted_out_at_twilio)


def _opted_out_at_twilio(phone: str) -> None:
    consent.opt_out(phone, source="twilio 21610", commit=False)


def dispatch(now: Optional[datetime] = None, *, send: bool = True) -> dict[str, int]:
    """One pass: plan, decide what is due, escalate, queue digests, send the outbox, reconcile unknowns, and
    put stale alert claims back in the triage queue. ``send=False`` leaves the outbox to the caller (under
    Celery the scheduler hands it to the ``messages`` workers).

    ``now`` is the sweep's idea of the time (``--now``; default the real time). Returns the summary printed
    by the CLI: ``sent``, ``escalated``, ``failed`` and the other counts; ``errors`` (when there were any)
    counts what could not be done because of an error — each logged with its traceback — while everything
    else went on: one bad row never stops a sweep, nor does one failing step stop the next.
    """
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    summary: Counter = Counter(planned=0)
    steps = (
        ("planning", lambda: Counter(planned=plan_reminders(now))),
        ("deciding due reminders", lambda: process_due(now)),
        ("queueing digests", lambda: queue_digests(now)),
        ("sending the outbox", lambda: deliver_outbox(now) if send else Counter()),
        ("reconciling unknown sends", lambda: delivery.reconcile(now)),
        ("releasing stale claims", lambda: +Counter(claims_released=alerts.release_stale_claims(now))),
    )
    for name, step in steps:
        try:
            summary.update(step())
        except Exception:  # noqa: BLE001 - the next step (sending what is queued) must still run
            log.exception("reminder sweep: %s failed; the sweep goes on", name)
            db.session.rollback()
            summary["errors"] += 1
    result = {key: int(summary.get(key, 0)) for key in ("sent", "escalated", "failed")}
    result.update({key: int(value) for key, value in sorted(summary.items()) if key not in result})
    return result
