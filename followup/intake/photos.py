"""Photo intake: the one function both the API and the patient's upload page call."""
from __future__ import annotations

import io
import logging
from datetime import datetime
from typing import Mapping, Optional

import numpy as np
from cryptography.fernet import Fernet
from flask import current_app
from PIL import Image
from sqlalchemy import func, select

from followup.analysis import jobs
from followup.db import db, utcnow
from followup.intake.cleaning import clean_photo
from followup.models import Photo, Site, UploadLink, User
from followup.models.photos import MODALITIES, PhotoKind, PhotoStatus
from followup.outreach.reminders import on_photo_received
from followup.records import links
from followup.storage import storage
from recurrence.encoding import ANSWER_KEYS

log = logging.getLogger(__name__)


def receive_photo(site: Site, data: bytes, *, kind: str, answers: Optional[Mapping[str, Optional[bool]]] = None,
                  link: Optional[UploadLink] = None, user: Optional[User] = None, enqueue: bool = True,
                  modality: Optional[str] = None, received_at: Optional[datetime] = None,
                  captured_at: Optional[datetime] = None) -> Photo:
    """Validate, strip and store a photo, record it as queued, and hand it to the job queue.

    Raises ``IntakeError`` before anything is written when the file is not an acceptable photo, and
    ``links.LinkProblem`` ("used"), storing nothing, when `link` took its last upload meanwhile.
    If the database write fails, the stored file is removed again unless another photo shares it.
    ``enqueue=False`` leaves the queued row for the caller to run (the demo seeding runs jobs itself).
    ``modality`` is what the uploader says the photo is (clinical or dermoscopy); None: told from the pixels.
    ``received_at`` / ``captured_at`` date a photo that arrived earlier (an import, the demo's history);
    by default it arrives now and was taken when its EXIF says.
    """
    if kind not in tuple(PhotoKind):
        raise ValueError("kind must be baseline or followup")
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {', '.join(MODALITIES)}")
    clean = clean_photo(data, max_pixels=current_app.config["MAX_IMAGE_PIXELS"])
    store = storage()
    key = store.put(clean.data, ext="jpg")
    original_key = None
    if current_app.config["ORIGINALS_KEY"]:
        original_key = store.put(Fernet(current_app.config["ORIGINALS_KEY"]).encrypt(data), ext="enc")
    photo = Photo(
        site_id=site.id, kind=kind, sha256=key.split(".")[0], storage_key=key, original_key=original_key,
        content_type="image/jpeg", size_bytes=len(clean.data), width=clean.width, height=clean.height,
        received_at=received_at or utcnow(), captured_at=captured_at or clean.captured_at, status=PhotoStatus.QUEUED,
        status_changed_at=received_at or utcnow(),
        enqueued_at=utcnow() if enqueue else None,
        upload_link_id=link.id if link else None, uploaded_by_id=user.id if user else None, modality=modality,
        **{f: (answers or {}).get(f) for f in ANSWER_KEYS},
    )
    try:
        db.session.add(photo)
        if link is not None and not links.take_upload_slot(link):
            raise links.LinkProblem("used", link)
        db.session.commit()
    except Exception:
        db.session.rollback()
        _forget_blob(key)
        if original_key:
            _forget_blob(original_key)
        raise
    on_photo_received(photo)  # the photo answers the request: its pending reminders are withdrawn
    if enqueue:
        jobs.enqueue_photo(photo.id)  # after the commit: a worker never gets the id of a row it cannot see
    return photo


def _forget_blob(key: str) -> None:
    shared = db.session.execute(
        select(func.count()).select_from(Photo).where((Photo.storage_key == key) | (Photo.original_key == key))
    ).scalar_one()
    if not shared:
        storage().delete(key)


def baseline_of(site_id: int) -> Optional[Photo]:
    """The site's newest accepted baseline photo."""
    return db.session.execute(
        select(Photo)
        .where(Photo.site_id == site_id, Photo.kind == PhotoKind.BASELINE, Photo.status == PhotoStatus.DONE)
        .order_by(Photo.received_at.desc(), Photo.id.desc()).limit(1)
    ).scalar_one_or_none()


def previous_followup_of(photo: Photo) -> Optional[Photo]:
    """The last accepted follow-up before ``photo``."""
    return db.session.execute(
        select(Photo).where(Photo.site_id == photo.site_id, Photo.kind == PhotoKind.FOLLOWUP,
                            Photo.status == PhotoStatus.DONE, Photo.id != photo.id,
                            Photo.received_at <= photo.received_at)
        .order_by(Photo.received_at.desc(), Photo.id.desc()).limit(1)
    ).scalar_one_or_none()


def load_image(key: str) -> np.ndarray:
    """A stored photo as an RGB uint8 array, shape (M, N, 3)."""
    with Image.open(io.BytesIO(storage().get(key))) as image:
        return np.asarray(image.convert("RGB"))
