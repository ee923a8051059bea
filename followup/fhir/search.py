"""Reads, searches (``patient``, ``_lastUpdated``, ``status``, paged) and ``$everything`` over the handlers."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable, Optional
from urllib.parse import urlencode

from sqlalchemy import Select
from werkzeug.datastructures import MultiDict

from followup.db import MAX_ID, db
from followup.fhir.common import base_url, validated
from followup.fhir.errors import FhirError
from followup.fhir.resources import HANDLERS, Handler

DEFAULT_COUNT = 20
MAX_COUNT = 100
_ID = re.compile(r"^(\d{1,10})(?:-([a-z0-9-]{1,40}))?$")
_CURSOR = re.compile(r"^(\d{1,10})\.(\d{1,5})$")


def search_params(handler: Handler) -> list[str]:
    """The search parameters a type takes (the CapabilityStatement lists the same)."""
    params = [] if handler.type == "Patient" else ["patient"]
    if handler.statuses:
        params.append("status")
    return params + ["_lastUpdated"]


def handler_for(resource_type: str) -> Handler:
    handler = HANDLERS.get(resource_type)
    if handler is None:
        raise FhirError(404, f"Resource type {resource_type} is not served here (see /fhir/r4/metadata).",
                        code="not-supported", expression=resource_type)
    return handler


@dataclass
class Found:
    """Resources and the patients they show (for the audit trail)."""

    resources: list[dict]
    patients: set[int]
    next_cursor: Optional[str] = None


def read(handler: Handler, clinic_id: int, resource_id: str) -> Found:
    """One resource of the clinic; 404 for an id that is not one, of another clinic, or missing."""
    match = _ID.match(resource_id)
    key = int(match.group(1)) if match else 0
    missing = FhirError(404, f"{handler.type}/{resource_id} doesn't exist.", code="not-found")
    if not match or not 0 < key <= handler.max_key:
        raise missing
    row = db.session.execute(handler.select(clinic_id).where(handler.key == key)).first()
    resources = [r for r in handler.build(row) if r["id"] == resource_id] if row is not None else []
    if not resources:
        raise missing
    return Found([validated(resources[0])], {row.patient_id})


def _instant(value: str, prefix: str) -> datetime:
    """The bound a ``_lastUpdated`` value gives: a date covers its whole (UTC) day."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = datetime.combine(date.fromisoformat(value), time(), tzinfo=timezone.utc)
            return day + timedelta(days=1) if prefix in ("gt", "le") else day
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise FhirError(400, f"_lastUpdated: {value!r} is not a date or a dateTime with a time zone.",
                        expression="_lastUpdated")
    return moment.astimezone(timezone.utc)


def _last_updated(stmt: Select, handler: Handler, values: Iterable[str]) -> Select:
    for raw in values:
        prefix, value = (raw[:2], raw[2:]) if raw[:2].isalpha() else ("eq", raw)
        bound = _instant(value, prefix)
        if prefix in ("ge", "gt"):
            stmt = stmt.where(handler.updated >= bound)
        elif prefix in ("le", "lt"):
            stmt = stmt.where(handler.updated < bound)
        else:
            raise FhirError(400, f"_lastUpdated: use the prefixes ge, gt, le or lt, not {prefix!r}.",
                            expression="_lastUpdated")
    return stmt


def _int_param(args: MultiDict, name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise FhirError(400, f"{name}: a whole number from {low} to {high}.", expression=name)
    return int(raw)


def search(handler: Handler, clinic_id: int, args: MultiDict) -> Found:
    """A page of a type's resources of the clinic, in id order. A row may make several resources (an
    analysis: its Observations), so the cursor names a row and how many of its resources were already sent."""
    allowed = set(search_params(handler)) | {"_count", "_cursor", "_format"}
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise FhirError(400, f"{handler.type} has no search parameter {', '.join(unknown)} here "
                             f"(it takes {', '.join(sorted(allowed - {'_cursor', '_format'}))}).",
                        code="not-supported", expression=unknown[0])
    count = _int_param(args, "_count", DEFAULT_COUNT, 1, MAX_COUNT)
    stmt = handler.select(clinic_id)
    for value in args.getlist("patient"):
        patient_id = value.removeprefix("Patient/")
        if not patient_id.isdigit() or int(patient_id) > MAX_ID:
            raise FhirError(400, f"patient: {value!r} is not a patient id.", expression="patient")
        stmt = stmt.where(handler.patient_column == int(patient_id))
    for value in args.getlist("status"):
        stmt = stmt.where(handler.status_condition(value))
    stmt = _last_updated(stmt, handler, args.getlist("_lastUpdated"))
    after_key, skip = 0, 0
    if "_cursor" in args:
        match = _CURSOR.match(args["_cursor"])
        if not match or int(match.group(1)) > handler.max_key:
            raise FhirError(400, "_cursor is not one this server returned.", expression="_cursor")
        after_key, skip = int(match.group(1)), int(match.group(2))
    # Every row makes at least one resource, so count + 1 rows fill the page and tell whether more follow.
    rows = db.session.execute(stmt.where(handler.key >= after_key).order_by(handler.key).limit(count + 1)).all()
    page: list[tuple[int, int, dict]] = []
    for row in rows:
        for index, resource in enumerate(handler.build(row)):
            if row.key == after_key and index < skip:
                continue
            page.append((row.key, index, resource))
    found = Found([validated(r) for _, _, r in page[:count]], {row.patient_id for row in rows[:count]})
    if len(page) > count:
        key, index, _ = page[count]
        found.next_cursor = f"{key}.{index}"
    return found


def everything(clinic_id: int, patient_id: int) -> Found:
    """The patient and every resource about them (one query per type, not paged)."""
    resources = []
    for handler in HANDLERS.values():
        column = handler.key if handler.type == "Patient" else handler.patient_column
        for row in db.session.execute(handler.select(clinic_id).where(column == patient_id)
                                      .order_by(handler.key)).all():
            resources.extend(validated(r) for r in handler.build(row))
    if not resources or resources[0]["resourceType"] != "Patient":
        raise FhirError(404, f"Patient/{patient_id} doesn't exist.", code="not-found")
    return Found(resources, {patient_id})


def bundle(kind: str, found: Found, *, self_url: str, next_url: Optional[str] = None) -> dict:
    base = base_url()
    links = [{"relation": "self", "url": self_url}] + ([{"relation": "next", "url": next_url}] if next_url else [])
    entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                **({"search": {"mode": "match"}} if kind == "searchset" else {})} for r in found.resources]
    return {"resourceType": "Bundle", "type": kind, "link": links, "entry": entries}


def page_url(resource_type: str, args: MultiDict, cursor: Optional[str]) -> str:
    items = [(k, v) for k, v in args.items(multi=True) if k != "_cursor"]
    if cursor:
        items.append(("_cursor", cursor))
    query = urlencode(items)
    return f"{base_url()}/{resource_type}" + (f"?{query}" if query else "")
