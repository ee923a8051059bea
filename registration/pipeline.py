"""The follow-up analysis of one photo pair: quality, alignment, normalisation, change."""

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from ._imageutil import (VIGNETTE, VIGNETTE_COMPARE, _analysis_scale, _check_rgb, _field_mask,
                         _resize, _saturated)
from .alignment import _align_prepared, _prepare
from .change import _HIGH, detect_change
from .lesion import segment_lesion
from .normalisation import match_blur, normalise_colour
from .quality import Quality, assess_quality

#: Flag threshold on the calibrated change score, chosen sensitivity-first on
#: the calibration pairs (bench/fit_calibration.py, held-out third of 300
#: generated pairs: AUC 0.94; 0.35 gave sensitivity 0.88, specificity 0.98).
#: Pairs with a located region score above 0.5 almost always, so below 0.35
#: the flag gains only region-less pairs, which have nothing to point at.
#: A missed recurrence costs more than a look at a false alarm.
FLAG_THRESHOLD = 0.35

_KIND_WORDS = {
    "new_lesion": "a new dark spot {where}",
    "growth": "the lesion or scar area grew by about {growth}",
    "darkening": "a new darker or blue-grey area inside the lesion or scar",
    "redness": "a new red area {where}",
    "other": "a colour change {where}",
}


@dataclass
class PairAnalysis:
    """Result of :func:`analyze_pair`; images are in the baseline frame and size.

    Attributes
    ----------
    quality : Quality
        Whether the follow-up photo can be trusted, with patient-facing reasons.
    registered : bool
        True when the follow-up was aligned to the baseline.
    homography : ndarray, shape (3, 3), float64, or None
        Follow-up pixel (x, y, 1) -> baseline pixel coordinates, full resolution,
        origin at the top-left pixel's centre.
    alignment_confidence : float
        0-1.
    aligned_image : ndarray, shape (M, N, 3), uint8, or None
        The follow-up warped into the baseline frame.
    valid_mask : ndarray, shape (M, N), bool
        Baseline pixels that the follow-up shows.
    change_mask : ndarray, shape (M, N), bool
        Changed pixels.
    change_score : float
        Calibrated probability (0-1) of a clinically relevant change.
    heatmap : ndarray, shape (M, N), float32
        Change evidence scaled to 0-1.
    regions : list of dict
        ``bbox`` [x0, y0, x1, y1], ``area_px``, ``growth_pct``, ``delta_e``,
        ``distance_to_lesion_px``, ``kind``, ``score``; baseline pixels.
    reasons : list of str
        Short explanations in words.
    timings : dict
        Seconds per stage.
    flag : bool
        True when the pair should raise an alert: ``change_score`` at least
        ``FLAG_THRESHOLD`` and at least one located region.
    change_features : ndarray, shape (2,), float64
        Inputs of the calibrated change score (for recalibration).
    """

    quality: Quality
    registered: bool
    homography: np.ndarray | None
    alignment_confidence: float
    aligned_image: np.ndarray | None
    valid_mask: np.ndarray
    change_mask: np.ndarray
    change_score: float
    heatmap: np.ndarray
    regions: list = field(default_factory=list)
    reasons: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    flag: bool = False
    change_features: np.ndarray = field(default_factory=lambda: np.zeros(2))


def _region_to_full(region, scale):
    """Analysis-resolution region measurements -> baseline full-resolution ones."""
    x0, y0, x1, y1 = region["bbox"]
    to_full = lambda v: (v + 0.5) / scale - 0.5  # noqa: E731 - pixel-centre convention
    return {
        "bbox": [int(np.floor(to_full(x0))), int(np.floor(to_full(y0))),
                 int(np.ceil(to_full(x1))), int(np.ceil(to_full(y1)))],
        "area_px": int(round(region["area_px"] / scale**2)),
        "growth_pct": region["growth_pct"],
        "delta_e": round(region["delta_e"], 2),
        "distance_to_lesion_px": (0.0 if region["distance_to_lesion_px"] == 0 else
                                  float(round(region["distance_to_lesion_px"] / scale, 1))),
        "kind": region["kind"],
        "score": round(region["score"], 4),
    }


def _describe(regions):
    """One short sentence per kind of change, strongest kinds first."""
    sentences = []
    for kind in dict.fromkeys(r["kind"] for r in regions):
        group = [r for r in regions if r["kind"] == kind]
        d = min(r["distance_to_lesion_px"] for r in group)
        if d == 0:
            where = "at the edge of the lesion or scar"
        elif np.isfinite(d):
            where = f"about {d:.0f} px from the lesion or scar"
        else:
            where = "in the photo"
        growth = sum(r["growth_pct"] or 0.0 for r in group)
        growth = f"{growth:.0f} %" if growth >= 1 else "less than 1 %"
        sentences.append(_KIND_WORDS[kind].format(where=where, growth=growth))
    return sentences


def analyze_pair(reference_image, moving_image, *, reference_mask=None):
    """Compare a follow-up photo with the baseline photo of the same site.

    Parameters
    ----------
    reference_image : ndarray, shape (M, N, 3), uint8
        Baseline RGB photo.
    moving_image : ndarray, shape (P, Q, 3), uint8
        Follow-up RGB photo.
    reference_mask : ndarray, shape (M, N), bool or uint8, optional
        The baseline lesion or scar (non-zero inside); segmented when omitted.

    Returns
    -------
    analysis : PairAnalysis
        An unusable or unaligned follow-up gives ``flag=False`` with
        ``quality.usable=False`` and reasons: a retake or a person's look, never
        a silent "no change".
    """
    reference_image = _check_rgb(reference_image, "reference_image")
    moving_image = _check_rgb(moving_image, "moving_image")
    if reference_mask is not None and np.asarray(reference_mask).shape != reference_image.shape[:2]:
        raise ValueError("reference_mask must have the baseline's height and width.")
    timings = {}
    h, w = reference_image.shape[:2]
    start = time.perf_counter()
    ref_prepared, mov_prepared = _prepare(reference_image), _prepare(moving_image)
    alignment = _align_prepared(ref_prepared, mov_prepared)
    timings["alignment"] = time.perf_counter() - start

    start = time.perf_counter()
    quality = assess_quality(moving_image, reference_image=reference_image, alignment=alignment)
    timings["quality"] = time.perf_counter() - start
    empty = np.zeros((h, w), bool)
    if not alignment.registered:
        return PairAnalysis(
            quality, False, None, alignment.confidence, None, empty, empty, 0.0,
            np.zeros((h, w), np.float32), [],
            ["the follow-up could not be aligned with the baseline; "
             "no change assessment was made — please retake or review"] + quality.reasons,
            timings, False,
        )

    start = time.perf_counter()
    scale = _analysis_scale(reference_image.shape)
    ref_small, _, _, to_ref_small = ref_prepared
    mov_small, _, mov_field, to_mov_small = mov_prepared
    sh, sw = ref_small.shape[:2]
    small_h = to_ref_small @ alignment.homography @ np.linalg.inv(to_mov_small)
    warped = cv2.warpPerspective(mov_small, small_h, (sw, sh), flags=cv2.INTER_LINEAR)
    # The field edge is smeared by blur and JPEG; keep clear of it.
    mov_field = cv2.erode(mov_field.astype(np.uint8), np.ones((5, 5), np.uint8))
    mov_field = cv2.warpPerspective(mov_field, small_h, (sw, sh), flags=cv2.INTER_NEAREST) > 0
    # Steep, dark vignetting cannot be compared reliably; leave it out.
    ref_field = _field_mask(ref_small, relative=VIGNETTE)
    valid_small = mov_field & _field_mask(ref_small, relative=VIGNETTE_COMPARE)
    timings["warp"] = time.perf_counter() - start

    start = time.perf_counter()
    ref_matched, mov_matched = match_blur(ref_small, warped, valid_small)
    ref_lab, mov_lab = normalise_colour(ref_matched, mov_matched, valid_small)
    timings["normalisation"] = time.perf_counter() - start

    start = time.perf_counter()
    if reference_mask is not None:
        lesion = _resize(np.asarray(reference_mask).astype(np.uint8) * 255, scale,
                         cv2.INTER_LINEAR) > 127
    else:
        lesion = segment_lesion(ref_small, field_mask=ref_field)
    result = detect_change(ref_lab, mov_lab, valid_small, lesion_mask=lesion,
                           saturated=(_saturated(ref_matched), _saturated(mov_matched)))
    timings["change"] = time.perf_counter() - start

    start = time.perf_counter()
    aligned = cv2.warpPerspective(moving_image, alignment.homography, (w, h),
                                  flags=cv2.INTER_LINEAR)
    full_size = (w, h)
    change_mask = cv2.resize(result.mask.astype(np.uint8), full_size,
                             interpolation=cv2.INTER_NEAREST) > 0
    valid_mask = cv2.resize(valid_small.astype(np.uint8), full_size,
                            interpolation=cv2.INTER_NEAREST) > 0
    heatmap = cv2.resize(np.clip(result.evidence / (2 * _HIGH), 0, 1).astype(np.float32),
                         full_size, interpolation=cv2.INTER_LINEAR)
    regions = [_region_to_full(r, scale) for r in result.regions]
    timings["output"] = time.perf_counter() - start

    # An alert must point at something: a high score without any located
    # region (scattered faint evidence) is reported in the score, not flagged.
    flag = result.score >= FLAG_THRESHOLD and bool(regions)
    if regions:
        reasons = _describe(regions)
    elif result.score >= FLAG_THRESHOLD:
        reasons = ["a faint, scattered colour change without a clear outline"]
    else:
        reasons = ["no relevant change found"]
    if not quality.usable:
        reasons += quality.reasons
    return PairAnalysis(
        quality, True, alignment.homography, alignment.confidence, aligned,
        valid_mask, change_mask, result.score, heatmap, regions, reasons, timings, flag,
        result.features,
    )
