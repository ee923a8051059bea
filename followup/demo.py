"""Demo data for ``seed-demo`` (and ``make run`` on an empty database).

A clinic, the contract's demo users, ten patients with sites and plans, real baseline photos (PAD-UFES-20,
CC BY 4.0, see demo_photos/ATTRIBUTION.md) and follow-ups generated from them, some with a synthetic
change. Every follow-up goes through the real pipeline, so the queue shows real analyses, not canned numbers.
"""
from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import func, select
from tqdm import tqdm

from followup import jobs
from followup.accounts import create_user
from followup.db import db, utcnow
from followup.models import Clinic, Photo, Site
from followup.patients import create_patient, create_site
from followup.photos import receive_photo

PHOTOS = Path(__file__).resolve().parent / "demo_photos"
DERM = ("derm@example.org", "demo-derm-password")
ADMIN = ("admin@example.org", "demo-admin-password")

# name, phone, photo, body site, diagnosis, stage, months since excision, follow-ups [(kind, confounder)]
PATIENTS = [
    ("Alex Morgan", "+447700900101", "PAT_109_868_113", "left ear", "melanoma", "IB", 7,
     [("none", None), ("darkening", None)]),
    ("Sam Patel", "+447700900102", "PAT_233_354_828", "right upper arm", "melanoma", "IIA", 10,
     [("none", "hair"), ("new_lesion", None)]),
    ("Jo Williams", "+447700900103", "PAT_262_402_14", "left forearm", "melanoma", "IA", 4, [("none", None)]),
    ("Chris Evans", "+447700900104", "PAT_101_1041_651", "neck", "bcc", None, 8, [("growth", None)]),
    ("Maria Silva", "+447700900105", "PAT_106_158_249", "right forearm", "bcc", "low", 14, [("none", "shadow")]),
    ("Tom Baker", "+447700900106", "PAT_108_161_423", "left forearm", "scc", None, 5,
     [("none", None), ("none", "ink")]),
    ("Ana Costa", "+447700900107", "PAT_108_424_944", "back of right hand", "other", None, 3, [("none", "glare")]),
    ("Lee Chen", "+447700900108", "PAT_110_165_583", "chest", "bcc", None, 18, [("new_lesion", None)]),
    ("Priya Nair", "+447700900109", "PAT_112_168_360", "nose", "bcc", None, 6, [("none", None)]),
    ("Owen Hughes", "+447700900110", "PAT_113_172_610", "scalp", "scc", "high", 11, [("darkening", None)]),
]


def database_is_empty() -> bool:
    return db.session.execute(select(func.count()).select_from(Clinic)).scalar_one() == 0


def _jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=92)
    return out.getvalue()


def seed_demo(*, seed: int = 7, analyse_now: bool = True) -> dict:
    """Create the demo clinic. With ``analyse_now`` the photos are analysed here, whatever JOB_BACKEND
    says; without, they stay queued (oldest first, so baselines before follow-ups) for the worker."""
    from registration import make_pair

    rng = np.random.default_rng(seed)
    clinic = Clinic(name="Demo Dermatology Clinic", phone="+441632960000", timezone="Europe/London")
    db.session.add(clinic)
    db.session.flush()
    derm = create_user(clinic, email=DERM[0], password=DERM[1], role="dermatologist", name="Dr Demo Derm")
    create_user(clinic, email=ADMIN[0], password=ADMIN[1], role="admin", name="Demo Admin")
    db.session.commit()

    photos = 0
    for name, phone, photo_id, body_site, diagnosis, stage, months, followups in tqdm(
            PATIENTS, desc="demo patients", unit="patient"):
        patient = create_patient(clinic, name=name, phone=phone, sms_consent=True)
        excision = (utcnow() - timedelta(days=30 * months)).date()
        site = create_site(patient, body_site=body_site, diagnosis=diagnosis, stage=stage, excision_date=excision,
                           dermatologist=derm)
        db.session.commit()
        baseline = np.asarray(Image.open(PHOTOS / f"{photo_id}.jpg").convert("RGB"))
        _receive(site, _jpeg(baseline), analyse_now, kind="baseline")
        for kind, confounder in followups:
            pair = make_pair(baseline, kind=kind, confounder=confounder, rng=rng, rotation=20.0,
                             scale_range=(0.85, 1.2))
            answers = {"grew": kind != "none", "bleed": kind == "darkening", "itch": None}
            _receive(site, _jpeg(pair.moving_image), analyse_now, kind="followup", answers=answers)
            photos += 1
    return {"clinic": clinic.name, "patients": len(PATIENTS), "followups": photos,
            "photos_done": db.session.execute(
                select(func.count()).select_from(Photo).where(Photo.status == "done")).scalar_one()}


def _receive(site: Site, data: bytes, analyse_now: bool, **kwargs) -> None:
    photo = receive_photo(site, data, enqueue=False, **kwargs)
    if analyse_now:
        jobs.run_photo_job(photo.id)
