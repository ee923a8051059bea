"""Our photos as DICOM files: the database's values handed to the pure builder in ``followup.dicom.builder``."""
from __future__ import annotations

import sys
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from followup import audit
from followup.db import db
from followup.dicom.builder import DicomPhoto, build_dicom
from followup.models import Photo, Site
from followup.outreach.hours import zone
from followup.records.body_sites import read_body_site
from followup.storage import storage


def dicom_photo(photo: Photo) -> DicomPhoto:
    """The plain values the DICOM file of ``photo`` states."""
    site = photo.site
    patient = site.patient
    tz = zone(patient.timezone)
    # The phone's clock (EXIF, kept as wall-clock time) when the photo had one, else when we received it.
    acquired = (photo.captured_at.replace(tzinfo=None) if photo.captured_at
                else photo.received_at.astimezone(tz).replace(tzinfo=None))
    return DicomPhoto(
        namespace=current_app.config["PUBLIC_BASE_URL"], patient_id=patient.id, patient_name=patient.name,
        birth_date=patient.date_of_birth, site_id=site.id, body_site=read_body_site(site.body_site),
        diagnosis=site.diagnosis, photo_id=photo.id, kind=photo.kind, modality=_modality(photo), acquired=acquired,
        study_started=site.created_at.astimezone(tz).replace(tzinfo=None),
    )


def _modality(photo: Photo) -> str:
    """What the uploader declared, else what the analysis read the pixels as; clinical before any analysis."""
    read = [a.modality for a in photo.analyses if a.modality]
    return photo.modality or (read[-1] if read else "clinical")


def photo_dicom(photo: Photo) -> bytes:
    """The DICOM Part 10 file of ``photo``, its stored JPEG encapsulated as it is."""
    return build_dicom(dicom_photo(photo), storage().get(photo.storage_key))


def export_site(site: Site, out_dir: Path, *, progress: bool = True) -> dict:
    """Write one ``photo-<id>.dcm`` per photo of ``site`` into ``out_dir`` (created); audited as an export."""
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = list(db.session.execute(
        select(Photo).where(Photo.site_id == site.id).order_by(Photo.received_at, Photo.id)).scalars())
    if progress:
        from tqdm import tqdm

        photos = tqdm(photos, desc="photos", unit="photo", file=sys.stderr)
    written = 0
    for photo in photos:
        (out_dir / f"photo-{photo.id}.dcm").write_bytes(photo_dicom(photo))
        written += 1
    audit.record("export_dicom", "site", site.id, actor="cli", photos=written, path=str(out_dir))
    return {"site_id": site.id, "photos": written, "out": str(out_dir)}
