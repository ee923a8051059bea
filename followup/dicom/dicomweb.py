"""The push of accepted photos to the hospital's DICOMweb archive (STOW-RS, PS3.18 10.5), when
``DICOMWEB_URL`` is set.

Each accepted photo gets a ``DicomPush`` row: ``pending`` until the archive confirms it (``sent``), retried with
a doubling wait (1, 2, 4, 8, 16 minutes) and ``failed`` after the last try, with the archive's answer kept in
``last_error``. The scheduler's minute sweep runs ``push_due``. Sending a photo twice is harmless: its UIDs are
the same, and an archive keeps one instance per SOP Instance UID.
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Iterable, Optional

from flask import current_app
from sqlalchemy import exists, select

from followup.db import db, insert_ignoring_conflicts, utcnow
from followup.dicom.builder import CONTENT_TYPE
from followup.dicom.export import photo_dicom
from followup.models import DicomPush, Photo
from followup.models.dicom import DicomPushState
from followup.models.photos import PhotoStatus

log = logging.getLogger(__name__)

TRIES = 6
BATCH = 50
TIMEOUT_SECONDS = 10
_FAILED_SOP_SEQUENCE = "00081198"


class StowError(Exception):
    """The archive did not store what was sent."""


def retry_delay(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed try."""
    return timedelta(minutes=2 ** (attempts - 1))


def stow(base_url: str, files: Iterable[bytes], *, timeout: float = TIMEOUT_SECONDS) -> None:
    """Store DICOM Part 10 ``files`` in the archive at ``base_url`` (``POST {base_url}/studies``).

    Raises ``StowError`` when the archive refuses any of them, ``OSError`` when it cannot be reached."""
    boundary = uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Type: {CONTENT_TYPE}\r\n\r\n".encode() + data + b"\r\n"
                    for data in files) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        base_url.rstrip("/") + "/studies", data=body, method="POST",
        headers={"Content-Type": f'multipart/related; type="{CONTENT_TYPE}"; boundary={boundary}',
                 "Accept": "application/dicom+json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer, answer_type = response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        raise StowError(f"the archive answered {exc.code}: {exc.read()[:300]!r}") from None
    # 200 is success; a 202 lists what failed in its Failed SOP Sequence (as a lenient archive's 200 may).
    answer = json.loads(answer) if answer_type.endswith("json") and answer.strip() else {}
    if failed := answer.get(_FAILED_SOP_SEQUENCE, {}).get("Value"):
        raise StowError(f"the archive refused {len(failed)} instance(s): {json.dumps(failed)[:300]}")


def push_due(now: Optional[datetime] = None) -> dict[str, int]:
    """One pass: give newly accepted photos a push row, then send the pending ones that are due."""
    base_url = current_app.config["DICOMWEB_URL"]
    if not base_url:
        return {}
    now = now or utcnow()
    counts = Counter(dicom_queued=_queue_accepted_photos(now))
    due = select(DicomPush).where(DicomPush.state == DicomPushState.PENDING, DicomPush.next_try_at <= now) \
        .order_by(DicomPush.next_try_at, DicomPush.id).limit(BATCH)
    for push in db.session.execute(due).scalars().all():
        push.attempts += 1
        unreachable = False
        try:
            stow(base_url, [photo_dicom(db.session.get(Photo, push.photo_id))])
        except Exception as exc:  # noqa: BLE001 - one photo's failure is retried; the pass goes on
            log.warning("DICOMweb push of photo %s failed (try %s): %s", push.photo_id, push.attempts, exc)
            push.last_error = str(exc)[:1000] or type(exc).__name__
            unreachable = isinstance(exc, OSError)
            if push.attempts >= TRIES:
                push.state = DicomPushState.FAILED
                counts["dicom_failed"] += 1
            else:
                push.next_try_at = now + retry_delay(push.attempts)
                counts["dicom_retrying"] += 1
        else:
            push.state, push.sent_at, push.last_error = DicomPushState.SENT, now, None
            counts["dicom_sent"] += 1
        db.session.commit()
        if unreachable:
            break  # the archive cannot be reached: the others wait for the next pass (the sweep is not held up)
    return {key: value for key, value in counts.items() if value}


def _queue_accepted_photos(now: datetime) -> int:
    photo_ids = list(db.session.execute(
        select(Photo.id).where(Photo.status == PhotoStatus.DONE, ~exists().where(DicomPush.photo_id == Photo.id))
        .order_by(Photo.id).limit(BATCH)).scalars())
    if photo_ids:
        # Two sweeps at once queue a photo once (unique photo_id).
        db.session.execute(insert_ignoring_conflicts(DicomPush, ["photo_id"]).values([
            {"photo_id": photo_id, "state": DicomPushState.PENDING, "attempts": 0, "next_try_at": now,
             "created_at": now}
            for photo_id in photo_ids]))
        db.session.commit()
    return len(photo_ids)
