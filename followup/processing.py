"""What a photo job does: a photo becomes an analysis (and maybe an alert).

Filled in by the analysis pipeline; until then the job records that no analyser is set.
"""
from __future__ import annotations

from followup.db import db, utcnow
from followup.models import Photo


def process_photo(photo: Photo) -> None:
    photo.status = "done" if photo.kind == "baseline" else "failed"
    photo.status_detail = None if photo.kind == "baseline" else "No analyser is set: the photo awaits analysis."
    photo.status_changed_at = utcnow()
    db.session.commit()
