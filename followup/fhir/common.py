"""What every FHIR resource of ours shares: the base URL, references, ``meta``, the image URLs, validation."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from flask import current_app
from sqlalchemy import ColumnElement, func, type_coerce

from followup.api import API_PREFIX
from followup.db import UTCDateTime
from followup.models import Photo

FHIR_PREFIX = "/fhir/r4"


def base_url() -> str:
    return f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}{FHIR_PREFIX}"


def validated(resource: dict) -> dict:
    """The resource checked by its fhir.resources model and serialised as that model writes it (ValidationError
    when we built something FHIR does not allow: a bug, never the client's input)."""
    model = get_fhir_model_class(resource["resourceType"])
    return model.model_validate(resource).model_dump(mode="json")


def reference(kind: str, id_: Any) -> dict:
    return {"reference": f"{kind}/{id_}"}


def meta(updated: datetime) -> dict:
    return {"lastUpdated": updated.isoformat()}


def last_updated(*columns) -> ColumnElement:
    """A row's last change: the first non-null of ``columns`` (latest event first), as a UTC datetime."""
    return type_coerce(func.coalesce(*columns), UTCDateTime()) if len(columns) > 1 else columns[0]


def photo_url(photo_id: int) -> str:
    """The authorised, audited image view of the API: a FHIR client fetches it with its bearer token."""
    return f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}{API_PREFIX}/photos/{photo_id}/image"


def overlay_url(analysis_id: int, name: str) -> str:
    """The API's authorised, audited view of an analysis' overlay image (bearer token), as for the photos."""
    return f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}{API_PREFIX}/analyses/{analysis_id}/overlays/{name}"


def attachment(photo: Photo) -> dict:
    return {"contentType": "image/jpeg", "url": photo_url(photo.id), "size": photo.size_bytes,
            "creation": (photo.captured_at or photo.received_at).isoformat()}
