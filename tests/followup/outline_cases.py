"""Site-outline cases for the tests: a baseline with a known lesion, uploads, and how alike two outlines are.

The fixtures that use them (``lesion_scene``, ``outline_site``, ``no_proposal``, ``square_proposal``) are in
tests/followup/conftest.py. Holds no tests.
"""
from __future__ import annotations

import io

from PIL import Image

from followup.db import db
from followup.intake.photos import receive_photo
from followup.models import Photo, Site

SHAPE = (360, 480)  # tests.registration.conftest.skin_photo's baseline
SQUARE = [[100, 100], [200, 100], [200, 180], [100, 180]]


def jpeg(pixels) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=93)
    return out.getvalue()


def upload(site: Site, pixels, kind: str = "baseline", **kwargs) -> Photo:
    """Receive a photo (analysed at once: the tests' JOB_BACKEND is sync) and refresh the site after it."""
    photo = receive_photo(site, jpeg(pixels), kind=kind, **kwargs)
    db.session.refresh(photo)
    db.session.refresh(site)
    return photo


def iou(a, b) -> float:
    """Intersection over union of two bool masks."""
    return float((a & b).sum() / max((a | b).sum(), 1))
