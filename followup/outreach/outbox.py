"""The SMS outbox: store first, claim, send once through `notifications`, record what became of it.

Exactly once, from the patient's point of view
----------------------------------------------
* A patient's upload link is stored sealed in the row's body (`followup.records.links`): it is opened only when the
  text is handed to the transport, to the same URL on every attempt and lookup, and logged hidden.
* Every logical message is one `OutboundMessage` row with a unique ``idempotency_key`` (``reminder:17``,
  ``alert:4``, ``digest:3:2026-05-01``): asking twice to send the same thing finds the row that exists.
* A row is sent only by the process that moved it ``pending → sending`` with one conditional UPDATE
  (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, SQLite serialises writers), committed *before* Twilio is called,
  together with ``attempted_at``.
* After the call the result is stored: ``sent`` (Twilio has it: never again), a retryable failure (Twilio
  provably created nothing: back to ``pending`` after a backoff), a final failure, or ``unknown`` (a timeout:
  never resent blindly). ``unknown`` rows — and ``sending`` rows whose process died mid-call — are reconciled
  with `SmsSender.lookup` from ``attempted_at``; only a lookup that proves nothing was created sends again.

Decisions about who is due live in `followup.outreach.reminders`; this module only moves rows through the outbox.
"""
from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Optional

from flask import Flask, current_app
from sqlalchemy import or_, select, update

from followup.db import claim_ids, db, utcnow
from followup.models import OutboundMessage, Patient
from followup.models.messages import OutboxStatus
from followup.records import links
from notifications import OutgoingSms, SendResult, SmsSender, sender_from_config

log = logging.getLogger(__name__)

#: Send attempts (each already retried inside the sender) before a message is given up as failed.
MAX_ATTEMPTS = 12
#: Backoff between attempts across sweeps, capped.
RETRY_BACKOFF_CAP = timedelta(minutes=15)
BATCH = 200


@dataclass(frozen=True)
class Hold:
    """What a pre-send guard decides for one claimed row: ``cancel`` it, or ``defer`` it until ``until``."""

    action: str  # cancel | defer
    detail: str
    until: Optional[datetime] = None


#: Called with the claimed rows (patients loaded) and the sweep's time; answers the rows not to send now.
Guard = Callable[[list[OutboundMessage], datetime], dict[int, Hold]]
#: Called with a number Twilio reports as opted out, inside the transaction that stores the send's result.
OptOut = Callable[[str], object]


def init_app(app: Flask) -> None:
    """The transport the configuration asks for: Twilio with credentials, else the console (log only)."""
    app.extensions["sms_sender"] = sender_from_config(app.config)


def sender() -> SmsSender:
    return current_app.extensions["sms_sender"]


def enqueue(*, key: str, clinic_id: int, to: str, body: str, purpose: str, patient_id: Optional[int] = None,
            user_id: Optional[int] = None, status: str = OutboxStatus.PENDING, error_message: Optional[str] = None
            ) -> Optional[OutboundMessage]:
    """Add a pending message unless one with ``key`` exists (then None). Part of the caller's transaction.

    The insert runs in a SAVEPOINT, so a concurrent writer of the same key costs this caller nothing.
    ``status="not_sent"`` records a message that cannot be sent (``error_message`` says why) under the same key.
    """
    if db.session.execute(select(OutboundMessage.id).where(OutboundMessage.idempotency_key == key)).first():
        return None
    message = OutboundMessage(idempotency_key=key, clinic_id=clinic_id, patient_id=patient_id, user_id=user_id,
                              to=to, body=body, purpose=purpose, status=status, attempts=0,
                              error_message=error_message)
    try:
        with db.session.begin_nested():
            db.session.add(message)
    except Exception as exc:  # noqa: BLE001 - IntegrityError from a concurrent insert of the same key
        if not db.session.execute(select(OutboundMessage.id).where(OutboundMessage.idempotency_key == key)).first():
            raise
        log.info("outbox: %s already queued by another process (%s)", key, type(exc).__name__)
        return None
    return message


def deliver_pending(now: Optional[datetime] = None, *, guard: Optional[Guard] = None,
                    on_opt_out: Optional[OptOut] = None) -> Counter:
    """Send every pending message whose time has come; stop early while Twilio is down.

    A number Twilio reports as opted out (error 21610) is passed to ``on_opt_out`` in the transaction that
    stores the result: what an opt-out means for the patient's reminders is the caller's to decide.

    ``now`` is the sweep's clock (``--now``) for backoff and guards; ``attempted_at`` is always real time,
    because reconciliation compares it with Twilio's clock. While one batch is on the wire the next is claimed
    and the previous one's results are stored, so the database and Twilio work at the same time.
    """
    now = now or utcnow()
    summary: Counter = Counter()
    workers = max(1, int(current_app.config.get("SMS_SEND_CONCURRENCY", 8)))
    transport = sender()  # worker threads have no app context
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sms-send") as pool:

        def launch(messages: list[OutgoingSms]) -> _Batch:
            return messages, [pool.submit(_send_one, transport, message) for message in messages]

        # A first message alone: during an outage the sweep learns it from one message, not a batch.
        probe = _claim(now, 1, guard, summary)
        if probe is None or (probe and not _settle(launch(probe), now, summary, on_opt_out)):
            return summary
        in_flight: Optional[_Batch] = None
        while True:
            claimed = _claim(now, BATCH, guard, summary)
            if in_flight is not None:
                healthy = _settle(in_flight, now, summary, on_opt_out)
                in_flight = None
                if not healthy:
                    if claimed:
                        _release(claimed)
                    break
            if claimed is None:
                break
            if claimed:
                in_flight = launch(claimed)
    return summary


_Batch = tuple[list[OutgoingSms], list[Future]]


def _settle(batch: _Batch, now: datetime, summary: Counter, on_opt_out: Optional[OptOut]) -> bool:
    """Wait for a batch, store its results; False when Twilio looks down (nothing sent, all retryable)."""
    messages, futures = batch
    counts = _store_results(messages, [future.result() for future in futures], now, on_opt_out)
    summary.update(counts)
    summary["attempted"] += len(messages)
    if not counts["sent"] and counts["retrying"]:
        log.warning("outbox: Twilio unavailable (%d retryable failures); the next sweep tries again",
                    counts["retrying"])
        summary["stopped_early"] = 1
        return False
    return True


def _release(messages: list[OutgoingSms]) -> None:
    """Hand claimed rows back untouched (the sweep stops before sending them)."""
    db.session.execute(
        update(OutboundMessage)
        .where(OutboundMessage.idempotency_key.in_([m.idempotency_key for m in messages]),
               OutboundMessage.status == OutboxStatus.SENDING)
        .values(status=OutboxStatus.PENDING, attempts=OutboundMessage.attempts - 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _claim(now: datetime, size: int, guard: Optional[Guard], summary: Counter) -> Optional[list[OutgoingSms]]:
    """Claim up to ``size`` due rows and commit them as ``sending``; None when nothing is due."""
    candidates = (
        select(OutboundMessage.id)
        .where(OutboundMessage.status == OutboxStatus.PENDING,
               or_(OutboundMessage.next_attempt_at.is_(None), OutboundMessage.next_attempt_at <= now))
        .order_by(OutboundMessage.id)
        .limit(size)
    )
    found = claim_ids(OutboundMessage, candidates)
    attempted_at = utcnow()
    ids: list[int] = []
    if found:
        ids = list(db.session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id.in_(found), OutboundMessage.status == OutboxStatus.PENDING)
            .values(status=OutboxStatus.SENDING, attempted_at=attempted_at, attempts=OutboundMessage.attempts + 1,
                    updated_at=attempted_at)
            .returning(OutboundMessage.id)
            .execution_options(synchronize_session=False)
        ).scalars())
    if not ids:
        db.session.commit()
        return [] if found else None  # [] : another sweep took them meanwhile; look again
    rows = list(db.session.execute(
        select(OutboundMessage).where(OutboundMessage.id.in_(ids)).order_by(OutboundMessage.id)
        .execution_options(populate_existing=True)
    ).scalars())
    patients = {p.id: p for p in db.session.execute(
        select(Patient).where(Patient.id.in_({r.patient_id for r in rows if r.patient_id}))).scalars()}
    holds: dict[int, Hold] = {}
    for row in rows:
        patient = patients.get(row.patient_id) if row.patient_id else None
        if patient is not None and not patient.can_receive_sms:
            holds[row.id] = Hold("cancel", "patient opted out" if patient.opted_out_at else "no SMS consent")
    if guard is not None:
        holds.update(_guarded(guard, [r for r in rows if r.id not in holds], now, summary))
    to_send = []
    for row in rows:
        hold = holds.get(row.id)
        if hold is None:
            try:
                to_send.append(outgoing(row))
                continue
            except ValueError as exc:
                row.status, row.error_message = OutboxStatus.FAILED, str(exc)
                summary["failed"] += 1
                continue
        row.attempts -= 1  # nothing was attempted
        if hold.action == "cancel":
            row.status, row.error_message = OutboxStatus.CANCELLED, hold.detail
            summary["cancelled"] += 1
        else:
            row.status, row.next_attempt_at, row.error_message = OutboxStatus.PENDING, hold.until, hold.detail
            summary["deferred"] += 1
    db.session.commit()  # 'sending' is durable before any request leaves
    return to_send


def outgoing(row: OutboundMessage) -> OutgoingSms:
    """The row's text as it leaves: its upload link opened now, and hidden in the copy for logs."""
    return OutgoingSms(to=row.to, body=links.open_links(row.body), idempotency_key=row.idempotency_key,
                       log_body=links.hide_links(row.body))


#: A message whose pre-send check raised waits this long (by the sweep's clock) before it is checked again.
GUARD_ERROR_RETRY = timedelta(minutes=15)


def _guarded(guard: Guard, rows: list[OutboundMessage], now: datetime, summary: Counter) -> dict[int, Hold]:
    """The guard's holds for ``rows``; when it raises, it is asked row by row (each in a SAVEPOINT), and a row
    it still raises on waits `GUARD_ERROR_RETRY` (logged, counted in ``errors``): the others are sent."""
    if not rows:
        return {}
    try:
        with db.session.begin_nested():
            return guard(rows, now)
    except Exception:  # noqa: BLE001 - one bad row must not hold back the batch
        log.warning("outbox: the pre-send check failed for a batch of %d; checking row by row", len(rows),
                    exc_info=True)
    holds: dict[int, Hold] = {}
    for row in rows:
        try:
            with db.session.begin_nested():
                holds.update(guard([row], now))
        except Exception as exc:  # noqa: BLE001
            log.exception("outbox: the pre-send check failed for message %s; it waits", row.id)
            holds[row.id] = Hold("defer", f"error in the pre-send check ({type(exc).__name__})",
                                 now + GUARD_ERROR_RETRY)
            summary["errors"] += 1
    return holds


def _send_one(transport: SmsSender, message: OutgoingSms) -> SendResult:
    try:
        return transport.send(message)
    except Exception as exc:  # noqa: BLE001 - a sender bug must not leave the row claimed forever
        log.exception("outbox: sender raised for %s", message.idempotency_key)
        return SendResult(status="unknown", error_message=f"sender raised {type(exc).__name__}: {exc}")


def _store_results(messages: list[OutgoingSms], results: list[SendResult], now: datetime,
                   on_opt_out: Optional[OptOut]) -> Counter:
    by_key = {m.idempotency_key: r for m, r in zip(messages, results)}
    rows = db.session.execute(
        select(OutboundMessage).where(OutboundMessage.idempotency_key.in_(list(by_key)))
        .execution_options(populate_existing=True)
    ).scalars()
    counts: Counter = Counter()
    opted_out: set[str] = set()
    for row in rows:
        outcome = apply_result(row, by_key[row.idempotency_key], now)
        counts[outcome] += 1
        if by_key[row.idempotency_key].opted_out:
            opted_out.add(row.to)
    if on_opt_out is not None:
        for phone in sorted(opted_out):
            on_opt_out(phone)
    db.session.commit()
    return counts


def apply_result(row: OutboundMessage, result: SendResult, now: datetime) -> str:
    """Store ``result`` on ``row``; answers the summary bucket: sent, not_sent, retrying, failed or unknown."""
    row.error_code = str(result.error_code) if result.error_code is not None else None
    row.error_message = result.error_message
    if result.sid:
        row.twilio_sid = result.sid
    if result.status in ("queued", "sent"):
        row.status, row.sent_at, row.next_attempt_at = OutboxStatus.SENT, utcnow(), None
        return "sent"
    if result.status == "unknown":
        row.status = OutboxStatus.UNKNOWN
        return "unknown"
    if result.retryable and row.attempts < MAX_ATTEMPTS:
        row.status = OutboxStatus.PENDING
        row.next_attempt_at = now + min(RETRY_BACKOFF_CAP, timedelta(minutes=2 ** max(0, row.attempts - 1)))
        return "retrying"
    if result.status == "not_sent" and not result.retryable:
        row.status = OutboxStatus.NOT_SENT  # no credentials: logged, deliberately not sent
        return "not_sent"
    row.status = OutboxStatus.FAILED
    log.warning("outbox: %s failed: %s %s", row.idempotency_key, result.error_code, result.error_message)
    return "failed"


def cancel_pending(where, detail: str) -> int:
    """Withdraw pending messages matching ``where`` (a SQL condition); answers how many."""
    result = db.session.execute(
        update(OutboundMessage).where(OutboundMessage.status == OutboxStatus.PENDING, where)
        .values(status=OutboxStatus.CANCELLED, error_message=detail, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0
