"""Triage cases for the web tests (unit and browser): photos, an analysis with overlay images, an alert.

Until the analysis pipeline writes these rows itself, tests build them here with the same shapes.
"""
from __future__ import annotations

import io
from datetime import timedelta
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from followup.db import db, utcnow
from followup.models import Analysis, Photo, Site
from followup.storage import storage
from followup.triage import alerts


def skin_image(width: int = 480, height: int = 360, *, seed: int = 0, spot: float = 0.0) -> Image.Image:
    """A textured skin-coloured picture with a scar line and, when ``spot`` > 0, a dark spot of that radius."""
    rng = np.random.default_rng(seed)
    base = np.array([205, 160, 140], dtype=float)
    pixels = base + rng.normal(0, 14, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.line([(width * .2, height * .5), (width * .8, height * .52)], fill=(170, 90, 90), width=6)
    if spot:
        cx, cy = width * .55, height * .42
        draw.ellipse([cx - spot, cy - spot, cx + spot, cy + spot], fill=(70, 40, 35))
    return image


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def add_photo(site: Site, *, kind: str, image: Optional[Image.Image] = None, status: str = "done",
              days_ago: float = 0, **answers) -> Photo:
    image = image or skin_image(seed=site.id)
    data = encode(image)
    key = storage().put(data, ext="jpg")
    when = utcnow() - timedelta(days=days_ago)
    photo = Photo(site_id=site.id, kind=kind, sha256=key.split(".")[0], storage_key=key, content_type="image/jpeg",
                  size_bytes=len(data), width=image.width, height=image.height, received_at=when,
                  status=status, status_changed_at=when, **answers)
    db.session.add(photo)
    db.session.flush()
    return photo


def analyse(photo: Photo, reference: Photo, *, flag: bool = True, score: float = 0.82, priority: int = 1,
            reasons: Optional[list[str]] = None, comparison: str = "baseline") -> Analysis:
    """An analysis of ``photo`` against ``reference`` with aligned/outline/heatmap/saliency images, and its alert."""
    aligned = Image.open(io.BytesIO(storage().get(photo.storage_key))).convert("RGB")
    aligned = aligned.resize((reference.width, reference.height))
    outline = aligned.copy()
    box = (int(reference.width * .45), int(reference.height * .3),
           int(reference.width * .65), int(reference.height * .55))
    ImageDraw.Draw(outline).rectangle(box, outline=(255, 220, 0), width=4)
    heat = aligned.copy()
    ImageDraw.Draw(heat).ellipse(box, fill=(230, 40, 40))
    heatmap = Image.blend(aligned, heat, 0.5)
    saliency = Image.blend(aligned, Image.new("RGB", aligned.size, (40, 40, 200)), 0.3)
    store = storage()
    overlays = {"aligned": store.put(encode(aligned), ext="jpg"), "outline": store.put(encode(outline), ext="jpg"),
                "heatmap": store.put(encode(heatmap, "PNG"), ext="png"),
                "saliency": store.put(encode(saliency), ext="jpg")}
    reasons = reasons if reasons is not None else ["new dark area next to the scar", "the patient says it grew"]
    area = (box[2] - box[0]) * (box[3] - box[1])
    analysis = Analysis(
        photo_id=photo.id, reference_photo_id=reference.id, comparison=comparison, registered=True,
        alignment_confidence=0.93, quality={"usable": True, "reasons": []},
        regions=[{"bbox": list(box), "area_px": area, "growth_pct": 35.0, "delta_e": 14.2,
                  "distance_to_lesion_px": 12.0, "kind": "new_pigment", "score": score}],
        change_score=score, recurrence_score=score, flag=flag, reasons=reasons, model_version="test-1",
        overlays=overlays,
    )
    db.session.add(analysis)
    photo.status, photo.status_changed_at = "done", utcnow()
    db.session.flush()
    if flag:
        site = db.session.get(Site, photo.site_id)
        alerts.raise_alert(clinic_id=site.patient.clinic_id, site_id=site.id, photo_id=photo.id, kind="change",
                           priority=priority, score=score, reasons=reasons)
    db.session.commit()
    return analysis


def reject(photo: Photo, reasons: list[str]) -> Analysis:
    """What the pipeline does with an unusable photo: a rejected status and the quality reasons."""
    analysis = Analysis(photo_id=photo.id, comparison="baseline", quality={"usable": False, "reasons": reasons},
                        reasons=[])
    db.session.add(analysis)
    photo.status, photo.status_detail, photo.status_changed_at = "rejected", "; ".join(reasons), utcnow()
    db.session.commit()
    return analysis


def flagged_case(site: Site, *, priority: int = 1, score: float = 0.82, days_ago: float = 0):
    """A baseline, a follow-up with answers, its analysis and an open alert; returns (baseline, photo, analysis)."""
    baseline = add_photo(site, kind="baseline", image=skin_image(seed=site.id), days_ago=days_ago + 60)
    photo = add_photo(site, kind="followup", image=skin_image(seed=site.id, spot=18), days_ago=days_ago,
                      grew=True, itch=False, bleed=None)
    analysis = analyse(photo, baseline, score=score, priority=priority)
    return baseline, photo, analysis
