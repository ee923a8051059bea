"""The site's outline: the scar outlined on its baseline photo, and the watched region around it.

- When a baseline photo is accepted, the pipeline proposes the outline (source ``auto``); when nothing stands
  out, nothing is stored and the patient's page asks staff to tap the scar or draw around it.
- Staff correct it: a tap on the scar (outlined from that point) or a polygon they draw (source ``staff``).
  A new baseline's proposal replaces an automatic outline; a staff outline of the same photo is kept.
- An outline applies only to the photo it was drawn on. A new baseline therefore gets a fresh proposal even
  where staff had outlined the old one, and the note says so until staff save an outline again.
- The watched site is the outline and a margin around it: ``site_margin_mm`` of the site's protocol
  (followup.records.plans), in baseline pixels at the photo's scale (``margin_px``).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import cv2
import numpy as np
from sqlalchemy import select

from followup.db import db
from followup.intake.photos import baseline_of, load_image
from followup.models import Analysis, Clinic, Photo, Site
from followup.models.photos import PhotoKind, PhotoStatus
from followup.records.plans import protocol_name, resolve_protocol
from registration import (
    detect_modality,
    mask_to_polygon,
    outline_from_point,
    pixels_per_mm,
    polygon_to_mask,
    propose_site,
    scale_from_length,
)

MAX_POINTS = 2000


class OutlineError(Exception):
    """A staff outline that cannot be stored: ``status`` 409 (no baseline, or another one) or 422 (bad input)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def site_margin_mm(site: Site) -> float:
    """The watched margin around the scar, from the clinic's protocol for the site's diagnosis and stage."""
    clinic = db.session.get(Clinic, site.patient.clinic_id)
    return resolve_protocol(protocol_name(site.diagnosis, site.stage), clinic.protocol_overrides).site_margin_mm


def margin_px(shape: Sequence[int], *, margin_mm: float, modality: str, mm_per_px: Optional[float] = None) -> float:
    """``margin_mm`` in pixels of a photo of ``shape`` (M, N[, 3]).

    ``mm_per_px`` is the photo's measured scale; without one (photos carry none yet) the modality's usual
    field size stands in (``registration.pixels_per_mm``).
    """
    return float(margin_mm) * pixels_per_mm(tuple(shape), modality=modality, mm_per_px=mm_per_px)


def clinic_mm_per_px(site: Site, reference: Photo) -> Optional[float]:
    """The scale the clinic gave at enrolment (the scar's length, mm) on ``reference``: mm per pixel of the photo
    the outline was drawn on, over the outline's longest extent. None without a length, without an outline, or
    for another photo."""
    if not site.scar_length_mm or not site.outline_polygon or site.outline_photo_id != reference.id:
        return None
    return scale_from_length(site.outline_polygon, site.scar_length_mm)


def baseline_modality(baseline: Photo) -> str:
    """What the baseline is: as declared at upload, else as detected when it was accepted (else detected now)."""
    if baseline.modality:
        return baseline.modality
    recorded = db.session.execute(
        select(Analysis.modality).where(Analysis.photo_id == baseline.id, Analysis.comparison == "quality",
                                        Analysis.modality.is_not(None)).order_by(Analysis.id.desc()).limit(1)
    ).scalar_one_or_none()
    if recorded:
        return recorded
    return detect_modality(load_image(baseline.storage_key))


def applies(site: Site, baseline: Optional[Photo]) -> bool:
    """True when the site has an outline and it was drawn on ``baseline``."""
    return bool(baseline is not None and site.outline_polygon and site.outline_photo_id == baseline.id)


def reference_mask(site: Site, baseline: Photo, reference: Photo, shape: Sequence[int]) -> Optional[np.ndarray]:
    """The outline as a bool mask of ``shape`` on ``reference``: the baseline itself, or an earlier follow-up
    (the outline carried through that photo's alignment to the baseline). None without an applicable outline
    (the pipeline then proposes one itself)."""
    if not applies(site, baseline):
        return None
    if reference.id == baseline.id:
        return polygon_to_mask(site.outline_polygon, shape)
    aligned = db.session.execute(
        select(Analysis).where(Analysis.photo_id == reference.id, Analysis.comparison == "baseline",
                               Analysis.reference_photo_id == baseline.id, Analysis.registered,
                               Analysis.homography.is_not(None)).order_by(Analysis.id.desc()).limit(1)
    ).scalar_one_or_none()
    if aligned is None:
        return None
    try:  # the homography maps the reference's pixels to the baseline's; the outline goes the other way
        to_reference = np.linalg.inv(np.asarray(aligned.homography, np.float64))
        points = cv2.perspectiveTransform(np.asarray(site.outline_polygon, np.float64)[None], to_reference)[0]
        mask = polygon_to_mask(points, shape)
    except (ValueError, np.linalg.LinAlgError):
        return None
    return mask if mask.any() else None


def propose_for_baseline(site: Site, photo: Photo, image: np.ndarray, *, modality: str) -> None:
    """A baseline photo was accepted: propose the site's outline on it, unless it is no longer the site's
    baseline or already has an outline (a job that runs twice keeps what staff drew)."""
    current = baseline_of(site.id)
    if current is None or current.id != photo.id:
        return
    if site.outline_photo_id == photo.id and site.outline_polygon:
        return
    replaces_staff = site.outline_source == "staff" and bool(site.outline_polygon)
    polygon = mask_to_polygon(propose_site(image, modality=modality))
    polygon = polygon if len(polygon) >= 3 else None
    site.outline_polygon = polygon
    site.outline_source = "auto" if polygon else None
    site.outline_photo_id = photo.id
    site.outline_note = None
    if replaces_staff:
        site.outline_note = (
            f"A new baseline photo ({photo.received_at:%d %b %Y}) replaced the one staff outlined the scar on: "
            + ("the outline was proposed again automatically — check it." if polygon else
               "nothing stood out to outline automatically — tap the scar or draw around it."))


def _checked_polygon(polygon: Any, width: int, height: int) -> list[list[float]]:
    if not isinstance(polygon, (list, tuple)) or len(polygon) < 3:
        raise OutlineError(422, "polygon: an outline needs at least 3 points [[x, y], ...]; draw around the scar.")
    if len(polygon) > MAX_POINTS:
        raise OutlineError(422, f"polygon: at most {MAX_POINTS} points.")
    points = []
    for i, point in enumerate(polygon):
        if not isinstance(point, (list, tuple)) or len(point) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in point):
            raise OutlineError(422, f"polygon.{i}: a point is [x, y], two finite numbers.")
        x, y = float(point[0]), float(point[1])
        if not (0 <= x < width and 0 <= y < height):
            raise OutlineError(422, f"polygon.{i}: ({x:.0f}, {y:.0f}) is outside the {width}x{height} photo.")
        points.append([round(x, 1), round(y, 1)])
    xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    if abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))) / 2 < 1.0:
        raise OutlineError(422, "polygon: the outline encloses no area; draw around the scar.")
    return points


def save_staff_outline(site: Site, *, polygon: Any = None, point: Any = None,
                       photo_id: Optional[int] = None) -> Photo:
    """Store the outline staff drew (``polygon``, baseline pixels) or tapped (``point`` (x, y) on the scar) on
    the site's current baseline; ``photo_id``, when given, must be that baseline. Returns the baseline.
    Raises OutlineError; the caller commits."""
    if (polygon is None) == (point is None):
        raise OutlineError(422, "Send either polygon or point.")
    baseline = baseline_of(site.id)
    if baseline is None:
        raise OutlineError(409, f"Site {site.id} has no accepted baseline photo yet; the scar is outlined on it.")
    if photo_id is not None and photo_id != baseline.id:
        raise OutlineError(409, f"Photo {photo_id} is not the site's baseline any more (photo {baseline.id} is); "
                                "outline the scar on the new baseline.")
    if point is not None:
        try:
            x, y = (float(v) for v in point)
        except (TypeError, ValueError):
            raise OutlineError(422, "point: a tap is [x, y], two numbers.") from None
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < baseline.width and 0 <= y < baseline.height):
            raise OutlineError(422, f"point: ({x:.0f}, {y:.0f}) is outside the {baseline.width}x{baseline.height} "
                                    "photo; tap on the scar.")
        image = load_image(baseline.storage_key)
        try:
            mask = outline_from_point(image, (x, y), modality=baseline_modality(baseline))
        except ValueError as exc:
            raise OutlineError(422, f"point: {exc}") from None
        points = mask_to_polygon(mask)
        if len(points) < 3:
            raise OutlineError(422, "point: nothing could be outlined there; draw around the scar instead.")
    else:
        points = _checked_polygon(polygon, baseline.width, baseline.height)
    site.outline_polygon, site.outline_source = [[float(x), float(y)] for x, y in points], "staff"
    site.outline_photo_id, site.outline_note = baseline.id, None
    return baseline


def outline_body(site: Site) -> Optional[dict[str, Any]]:
    """The site's outline as the API shows it, or None."""
    if not site.outline_polygon:
        return None
    return {"polygon": site.outline_polygon, "source": site.outline_source, "photo_id": site.outline_photo_id,
            "margin_mm": site_margin_mm(site), "note": site.outline_note}


def outline_view(site: Site) -> dict[str, Any]:
    """What the staff pages draw: the current baseline, the outline on it (or None) and the margin in pixels."""
    baseline = baseline_of(site.id)
    pending = db.session.execute(
        select(Photo.id).where(Photo.site_id == site.id, Photo.kind == PhotoKind.BASELINE,
                               Photo.status.in_((PhotoStatus.QUEUED, PhotoStatus.PROCESSING))).limit(1)
    ).first() is not None
    view: dict[str, Any] = {"baseline": baseline, "pending": pending, "polygon": None, "source": None,
                            "note": site.outline_note, "margin_mm": site_margin_mm(site), "margin_px": None,
                            "proposed": baseline is not None and site.outline_photo_id == baseline.id}
    if baseline is None:
        return view
    if applies(site, baseline):
        view["polygon"], view["source"] = site.outline_polygon, site.outline_source
    elif site.outline_polygon:
        view["note"] = view["note"] or "The outline was drawn on an earlier baseline photo; outline the scar again."
    view["margin_px"] = margin_px((baseline.height, baseline.width), margin_mm=view["margin_mm"],
                                  modality=baseline_modality(baseline))
    return view
