"""The site: the scar or lesion outlined on the baseline, and the region around it that is watched.

The outline is proposed automatically (:func:`propose_site`), or from a tap on it
(:func:`outline_from_point`), or drawn by staff (a polygon, :func:`polygon_to_mask`). The site region
adds the margin of the clinic's protocol (:func:`site_region`), e.g. 2 cm around a melanoma scar.
"""

import cv2
import numpy as np

from ._imageutil import VIGNETTE, _check_rgb, _field_mask
from .lesion import segment_clinical_lesion, segment_lesion
from .modality import CLINICAL, DERMOSCOPY, detect_modality
from .skin import segment_skin

#: What the photo's shorter side spans when nothing in it gives the scale: a phone close-up of a
#: scar with some skin around it, and a dermoscope's field. Only the site margin depends on it.
ASSUMED_SHORT_SIDE_MM = {CLINICAL: 60.0, DERMOSCOPY: 20.0}
#: Radius (share of the shorter side) of the outline a tap gives when no edge stands out around it.
_TAP_RADIUS = 0.04


def _check_modality(modality, image):
    if modality is None:
        return detect_modality(image)
    if modality not in (CLINICAL, DERMOSCOPY):
        raise ValueError(f"unknown modality {modality!r}; use {CLINICAL!r} or {DERMOSCOPY!r}.")
    return modality




def propose_site(image, *, modality=None):
    """Propose the outline of the scar or lesion in a baseline photo.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
        Baseline RGB photo.
    modality : {'clinical', 'dermoscopy'}, optional
        Detected when omitted (:func:`registration.detect_modality`).

    Returns
    -------
    outline : ndarray, shape (M, N), bool
        The proposed site; all False when nothing stands out (staff then tap or draw it).
    """
    image = _check_rgb(image, "image")
    modality = _check_modality(modality, image)
    if modality == DERMOSCOPY:
        return segment_lesion(image, field_mask=_field_mask(image, relative=VIGNETTE))
    return segment_clinical_lesion(image, skin_mask=segment_skin(image))


def outline_from_point(image, point, *, modality=None):
    """Outline the scar or lesion that a tap at `point` falls on.

    The lesion segmentation is run on a window around the point; the part containing the point
    (or the nearest one) is kept. Where nothing stands out, a small disc around the point.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
    point : tuple of float
        (x, y) in pixel coordinates of `image`.
    modality : {'clinical', 'dermoscopy'}, optional

    Returns
    -------
    outline : ndarray, shape (M, N), bool
    """
    image = _check_rgb(image, "image")
    h, w = image.shape[:2]
    x, y = (float(v) for v in point)
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"point ({x:.0f}, {y:.0f}) is outside the {w}x{h} photo; tap on the scar.")
    modality = _check_modality(modality, image)
    half = int(0.25 * max(h, w))
    x0, y0 = max(0, int(x) - half), max(0, int(y) - half)
    x1, y1 = min(w, int(x) + half + 1), min(h, int(y) + half + 1)
    window = np.ascontiguousarray(image[y0:y1, x0:x1])
    outline = np.zeros((h, w), bool)
    if min(window.shape[:2]) >= 32:
        found = (segment_lesion(window, field_mask=np.ones(window.shape[:2], bool)) if modality == DERMOSCOPY
                 else segment_clinical_lesion(window, skin_mask=segment_skin(window)))
        n, labels = cv2.connectedComponents(found.astype(np.uint8), connectivity=8)
        if n > 1:
            distance = np.full(n, np.inf)
            ys, xs = np.nonzero(labels)
            d = np.hypot(xs + x0 - x, ys + y0 - y)
            np.minimum.at(distance, labels[ys, xs], d)
            best = int(np.argmin(distance))
            if distance[best] <= 0.05 * max(h, w):
                outline[y0:y1, x0:x1] = labels == best
    if not outline.any():
        radius = max(3, int(_TAP_RADIUS * min(h, w)))
        cv2.circle(outline.view(np.uint8), (int(round(x)), int(round(y))), radius, 1, -1)
    return outline


def pixels_per_mm(shape, *, modality, mm_per_px=None):
    """Pixels per millimetre on the baseline: from a known scale, else the modality's usual field.

    Parameters
    ----------
    shape : tuple
        The baseline's (M, N[, 3]).
    modality : {'clinical', 'dermoscopy'}
    mm_per_px : float, optional
        A measured scale (reference sticker, or a length measured in clinic).
    """
    if mm_per_px is not None:
        if not mm_per_px > 0:
            raise ValueError("mm_per_px must be positive.")
        return 1.0 / float(mm_per_px)
    if modality not in ASSUMED_SHORT_SIDE_MM:
        raise ValueError(f"unknown modality {modality!r}; use {CLINICAL!r} or {DERMOSCOPY!r}.")
    return min(shape[:2]) / ASSUMED_SHORT_SIDE_MM[modality]


def site_region(outline, *, margin_px):
    """The watched region: the outline and everything within `margin_px` of it.

    Parameters
    ----------
    outline : ndarray, shape (M, N), bool
        The scar or lesion.
    margin_px : float
        Margin, in pixels of `outline`.

    Returns
    -------
    region : ndarray, shape (M, N), bool
        All True when the outline is empty: without an outline everything is watched.
    """
    outline = np.asarray(outline).astype(bool)
    if outline.ndim != 2:
        raise ValueError("outline must be a 2-D mask, shape (M, N).")
    if margin_px < 0:
        raise ValueError("margin_px must be zero or more.")
    if not outline.any():
        return np.ones(outline.shape, bool)
    distance = cv2.distanceTransform((~outline).astype(np.uint8), cv2.DIST_L2, 5)
    return distance <= margin_px


def mask_to_polygon(mask, *, tolerance=1.5):
    """The outer outline of the largest part of `mask` as a polygon [[x, y], ...] (pixel centres)."""
    mask = np.asarray(mask).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    largest = max(contours, key=cv2.contourArea)
    simple = cv2.approxPolyDP(largest, tolerance, True)
    return [[int(p[0][0]), int(p[0][1])] for p in simple]


def polygon_to_mask(polygon, shape):
    """Fill a polygon [[x, y], ...] (at least 3 points) into a bool mask of `shape` (M, N)."""
    points = np.asarray(polygon, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise ValueError("an outline needs at least 3 points [[x, y], ...]; draw around the scar.")
    if not np.all(np.isfinite(points)):
        raise ValueError("outline points must be finite numbers.")
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask > 0
