"""Audit trail: every read of a patient's record, photo or list, every export, sign-in, token and resolve is
written here with the patients it showed, so "who saw patient X" is one indexed query; admins read the trail
of their clinic by patient and by user (page, API, CSV)."""
from __future__ import annotations

import base64
import csv
import io
import json
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Optional

from flask import Response, abort, has_request_context, request, stream_with_context
from flask_login import current_user
from sqlalchemy import Select, select

from followup.db import MAX_ID, db
from followup.models import Alert, Analysis, AuditEvent, AuditSubject, InboundMessage, Patient, Photo, Site, User

# The patient a record belongs to, for the record types that belong to one (the migration backfills the same).
_PATIENT_OF: dict[str, Callable[[int], Select]] = {
    "patient": lambda id_: select(Patient.id).where(Patient.id == id_),
    "site": lambda id_: select(Site.patient_id).where(Site.id == id_),
    "photo": lambda id_: select(Site.patient_id).join(Photo, Photo.site_id == Site.id).where(Photo.id == id_),
    "alert": lambda id_: select(Site.patient_id).join(Alert, Alert.site_id == Site.id).where(Alert.id == id_),
    "analysis": lambda id_: (select(Site.patient_id).join(Photo, Photo.site_id == Site.id)
                             .join(Analysis, Analysis.photo_id == Photo.id).where(Analysis.id == id_)),
    "inbound_message": lambda id_: select(InboundMessage.patient_id).where(InboundMessage.id == id_),
}


def record(action: str, record_type: str, record_id: Optional[int], *, user: Optional[User] = None,
           actor: Optional[str] = None, commit: bool = True, patients: Iterable[int] = (), **detail: Any) -> None:
    """Add an audit event; ``user`` defaults to the logged-in web user.

    ``patients``: the patients a list view showed. The patient a single record belongs to is found here."""
    if user is None and has_request_context() and current_user and current_user.is_authenticated:
        user = current_user._get_current_object()
    _add(action, record_type, record_id, user_id=user.id if user else None,
         actor=actor or (f"user:{user.id}" if user else "system"), patients=patients, detail=detail)
    if commit:
        db.session.commit()


def sign_in_failed(email: str, *, via: str) -> None:
    """A refused sign-in (web or API), filed under the account the e-mail names, when there is one, so the
    account's trail shows it; the attempt itself is nobody's (actor ``anonymous``). What was typed is kept only
    when it is an account's e-mail: anything else may be a password typed into the wrong box."""
    email = email.strip().lower()[:254]
    account = db.session.execute(select(User.id).where(User.email == email)).scalar_one_or_none()
    _add("sign_in_failed", "user", account, user_id=account, actor="anonymous", patients=(),
         detail={"via": via, "email": email} if account is not None else {"via": via, "account": "unknown"})
    db.session.commit()


def _add(action: str, record_type: str, record_id: Optional[int], *, user_id: Optional[int], actor: str,
         patients: Iterable[int], detail: dict[str, Any]) -> None:
    subjects = set(patients)
    if record_id is not None and record_type in _PATIENT_OF:
        owner = db.session.execute(_PATIENT_OF[record_type](record_id)).scalar_one_or_none()
        if owner is not None:
            subjects.add(owner)
    db.session.add(AuditEvent(
        user_id=user_id, actor=actor, action=action, record_type=record_type, record_id=record_id,
        ip=request.remote_addr if has_request_context() else None, detail=detail,
        subjects=[AuditSubject(patient_id=p) for p in sorted(subjects)],
    ))


# Reading the trail.

def read_trail(reader: User, action: str, *, patient_id: Optional[int] = None, user_id: Optional[int] = None,
               since: Optional[datetime] = None, until: Optional[datetime] = None) -> Select:
    """The trail an admin asked for: events about ``patient_id`` and/or by ``user_id``, else every event by the
    clinic's staff; ``since`` inclusive, ``until`` exclusive; newest first. 404 for a patient or user of another
    clinic. The reading is itself audited (``action``)."""
    if patient_id is not None:
        patient = db.session.get(Patient, patient_id)
        if patient is None or patient.clinic_id != reader.clinic_id:
            abort(404, f"Patient {patient_id} doesn't exist.")
    if user_id is not None:
        user = db.session.get(User, user_id)
        if user is None or user.clinic_id != reader.clinic_id:
            abort(404, f"User {user_id} doesn't exist.")
    asked = {"patient_id": patient_id, "user_id": user_id, "since": since, "until": until}
    record(action, "clinic", reader.clinic_id, user=reader,
           **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in asked.items() if v is not None})
    stmt = select(AuditEvent)
    if patient_id is not None:
        stmt = stmt.join(AuditSubject, AuditSubject.audit_id == AuditEvent.id).where(
            AuditSubject.patient_id == patient_id)
    if user_id is not None:
        stmt = stmt.where(AuditEvent.user_id == user_id)
    if patient_id is None and user_id is None:
        stmt = stmt.join(User, User.id == AuditEvent.user_id).where(User.clinic_id == reader.clinic_id)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.at < until)
    return stmt.order_by(AuditEvent.id.desc())


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"a:{last_id}".encode()).decode()


def decode_cursor(cursor: Optional[str]) -> Optional[int]:
    if not cursor:
        return None
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        last_id = int(value)
    except (ValueError, UnicodeDecodeError):
        abort(400, "cursor is not one this API returned")
    if kind != "a" or not 0 < last_id <= MAX_ID:
        abort(400, "cursor is not one this API returned")
    return last_id


def page(stmt: Select, *, cursor: Optional[str], limit: int) -> tuple[list[dict[str, Any]], Optional[str]]:
    """One page of a trail (keyset on the event id: deep pages cost no more than the first) and the next cursor."""
    after = decode_cursor(cursor)
    if after is not None:
        stmt = stmt.where(AuditEvent.id < after)
    events = list(db.session.execute(stmt.limit(limit + 1)).scalars())
    more = len(events) > limit
    events = events[:limit]
    ids = {e.user_id for e in events if e.user_id is not None}
    emails = dict(db.session.execute(select(User.id, User.email).where(User.id.in_(ids))).all()) if ids else {}
    return [_row(e, emails.get(e.user_id)) for e in events], encode_cursor(events[-1].id) if more else None


def _row(event: AuditEvent, email: Optional[str]) -> dict[str, Any]:
    return {
        "id": event.id, "at": event.at, "actor": event.actor, "user_id": event.user_id, "user_email": email,
        "action": event.action, "record_type": event.record_type, "record_id": event.record_id, "ip": event.ip,
        "patient_ids": [s.patient_id for s in event.subjects], "detail": event.detail or {},
    }


CSV_COLUMNS = ("id", "at", "actor", "user_id", "user_email", "action", "record_type", "record_id", "patient_ids",
               "ip", "detail")
_CSV_BATCH = 500


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        text = " ".join(map(str, value)) if isinstance(value, list) else json.dumps(value, sort_keys=True)
    else:
        text = str(value)
    # A spreadsheet runs a cell that starts like a formula, and an account's e-mail address can start like one.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_response(stmt: Select) -> Response:
    """A trail as a CSV download, streamed (the request's context stays until the last line is sent)."""
    return Response(stream_with_context(_csv_lines(stmt)), mimetype="text/csv", headers={
        "Content-Disposition": 'attachment; filename="audit.csv"', "Cache-Control": "private, no-store"})


def _csv_lines(stmt: Select) -> Iterator[str]:
    """The whole trail as CSV lines, read in batches so a long trail is never held in memory at once."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    cursor = None
    while True:
        rows, cursor = page(stmt, cursor=cursor, limit=_CSV_BATCH)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if cursor is None:
            return
