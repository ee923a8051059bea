"""The follow-up analysis of one photo pair: quality, alignment, normalisation, change."""

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from ._imageutil import VIGNETTE, VIGNETTE_COMPARE, _analysis_scale, _check_rgb, _field_mask, _resize, _saturated
from .alignment import _align_prepared, _prepare
from .change import _HIGH, detect_change
from .describe import describe_changes
from .lesion import segment_clinical_lesion, segment_lesion
from .modality import CLINICAL, DERMOSCOPY, detect_modality
from .normalisation import match_blur, normalise_colour
from .quality import Quality, assess_quality
from .region_classifier import classify_change
from .region_classifier import enabled as learned_regions_enabled
from .site import pixels_per_mm, site_region
from .skin import segment_skin

#: Flag threshold on the calibrated change score, chosen sensitivity-first on
#: the calibration pairs (bench/fit_calibration.py, held-out third of 300
#: generated pairs: AUC 0.94; 0.35 gave sensitivity 0.88, specificity 0.98).
#: Pairs with a located region score above 0.5 almost always, so below 0.35
#: the flag gains only region-less pairs, which have nothing to point at.
#: A missed recurrence costs more than a look at a false alarm.
FLAG_THRESHOLD = 0.35
#: Band (px at the analysis size) along the edge of the skin that is not compared.
_SKIN_EDGE = 9
#: Margin (mm) around the outlined scar or lesion that is watched when the caller gives none.
DEFAULT_SITE_MARGIN_MM = 10.0

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
    modality : str
        ``'clinical'`` (a phone photo) or ``'dermoscopy'``: which rules were applied.
    outline : ndarray, shape (M, N), bool
        The scar or lesion on the baseline (given, or proposed when not).
    site_mask : ndarray, shape (M, N), bool
        The watched site region: the outline and its margin. Each region's ``in_site`` says
        whether it touches it; ``site_flag`` is ``flag`` counting only those regions (changes
        outside the site are reported but never make a priority-1 alert alone).
    site_flag : bool
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
    modality: str = CLINICAL
    outline: np.ndarray | None = None
    site_mask: np.ndarray | None = None
    site_flag: bool = False


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
        "in_site": region["in_site"],
    }


def analyze_pair(reference_image, moving_image, *, reference_mask=None, modality=None, site_margin_px=None):
    """Compare a follow-up photo with the baseline photo of the same site.

    Parameters
    ----------
    reference_image : ndarray, shape (M, N, 3), uint8
        Baseline RGB photo.
    moving_image : ndarray, shape (P, Q, 3), uint8
        Follow-up RGB photo.
    reference_mask : ndarray, shape (M, N), bool or uint8, optional
        The baseline lesion or scar outline (non-zero inside); proposed when omitted
        (:func:`registration.propose_site`).
    modality : {'clinical', 'dermoscopy'}, optional
        What the baseline is (the upload may say); detected when omitted. Dermoscopy rules (a
        field with vignetting) are applied to dermoscopy only.
    site_margin_px : float, optional
        Margin (baseline pixels) around the outline that makes the watched site region; by
        default ``DEFAULT_SITE_MARGIN_MM`` at the modality's usual scale.

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
    if modality is None:
        modality = detect_modality(reference_image)
    elif modality not in (CLINICAL, DERMOSCOPY):
        raise ValueError(f"unknown modality {modality!r}; use {CLINICAL!r} or {DERMOSCOPY!r}.")
    if site_margin_px is None:
        site_margin_px = DEFAULT_SITE_MARGIN_MM * pixels_per_mm(reference_image.shape, modality=modality)
    timings = {}
    h, w = reference_image.shape[:2]
    full_size = (w, h)
    scale = _analysis_scale(reference_image.shape, upscale=True)

    start = time.perf_counter()
    ref_small = _resize(reference_image, scale)
    sh, sw = ref_small.shape[:2]
    if reference_mask is not None:
        outline = np.asarray(reference_mask).astype(bool)
        outline_small = _resize(outline.astype(np.uint8) * 255, scale, cv2.INTER_LINEAR) > 127
    if modality == DERMOSCOPY:
        # Steep, dark vignetting is no place to look for a lesion.
        ref_field = _field_mask(ref_small, relative=VIGNETTE)
        if reference_mask is None:
            outline_small = segment_lesion(ref_small, field_mask=ref_field)
    else:
        photographed = _field_mask(ref_small)
        ref_field = segment_skin(ref_small)
        if reference_mask is None:
            outline_small = segment_clinical_lesion(ref_small, skin_mask=ref_field & photographed)
        # The scar is compared whatever its colour (a wound, an ulcer). The skin model is the
        # photo's body colours, not a ring around the outline: a proposed outline may run along
        # the body's edge, and its ring would teach the background as skin.
        ref_field = (ref_field | outline_small) & photographed
    if reference_mask is None:
        outline = cv2.resize(outline_small.astype(np.uint8), full_size, interpolation=cv2.INTER_NEAREST) > 0
    site_mask = site_region(outline, margin_px=site_margin_px)
    site_small = cv2.resize(site_mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
    timings["site"] = time.perf_counter() - start

    start = time.perf_counter()
    ref_prepared = _prepare(reference_image, small=ref_small,
                            mask=None if modality == DERMOSCOPY else ref_field)
    mov_prepared = _prepare(moving_image, skin=modality == CLINICAL)
    alignment = _align_prepared(ref_prepared, mov_prepared,
                                outline=None if modality == DERMOSCOPY else outline_small)
    timings["alignment"] = time.perf_counter() - start

    start = time.perf_counter()
    quality = assess_quality(moving_image, reference_image=reference_image, alignment=alignment,
                             field_mask=None if modality == DERMOSCOPY else mov_prepared.mask)
    timings["quality"] = time.perf_counter() - start
    empty = np.zeros((h, w), bool)
    if not alignment.registered:
        return PairAnalysis(
            quality, False, None, alignment.confidence, None, empty, empty, 0.0,
            np.zeros((h, w), np.float32), [],
            ["the follow-up could not be aligned with the baseline; "
             "no change assessment was made — please retake or review"] + quality.reasons,
            timings, False, modality=modality, outline=outline, site_mask=site_mask,
        )

    start = time.perf_counter()
    ref_mask, to_ref_small = ref_prepared.mask, ref_prepared.to_small
    mov_small, mov_field, to_mov_small = mov_prepared.small, mov_prepared.mask, mov_prepared.to_small
    small_h = to_ref_small @ alignment.homography @ np.linalg.inv(to_mov_small)
    warped = cv2.warpPerspective(mov_small, small_h, (sw, sh), flags=cv2.INTER_LINEAR)
    if modality == CLINICAL and outline_small.any():
        # Now that the scar's place in the follow-up is known, the skin around it there teaches
        # a second skin model (the follow-up's light and white balance are its own): what either
        # model calls skin is compared, so that a lesion on pale or glaring skin is not dropped.
        mh, mw = mov_small.shape[:2]
        seen = cv2.warpPerspective(outline_small.astype(np.uint8), np.linalg.inv(small_h), (mw, mh),
                                   flags=cv2.INTER_NEAREST) > 0
        if seen.sum() >= 30:
            mov_field = (segment_skin(mov_small, site_mask=seen) | mov_field) & mov_prepared.field
    # The field edge is smeared by blur and JPEG; keep clear of it.
    mov_field = cv2.erode(mov_field.astype(np.uint8), np.ones((5, 5), np.uint8))
    mov_field = cv2.warpPerspective(mov_field, small_h, (sw, sh), flags=cv2.INTER_NEAREST) > 0
    if modality == DERMOSCOPY:
        # Steep, dark vignetting cannot be compared reliably; leave it out.
        valid_small = mov_field & _field_mask(ref_small, relative=VIGNETTE_COMPARE)
    else:
        # Only skin both photos show: never the background, clothing or a card; and clear of
        # the skin's edge, which a coarse segmentation places only to a few pixels.
        edge = np.ones((_SKIN_EDGE, _SKIN_EDGE), np.uint8)
        valid_small = ((cv2.erode(mov_field.astype(np.uint8), edge) > 0)
                       & (cv2.erode(ref_mask.astype(np.uint8), edge) > 0))
    timings["warp"] = time.perf_counter() - start

    start = time.perf_counter()
    ref_matched, mov_matched = match_blur(ref_small, warped, valid_small)
    ref_lab, mov_lab = normalise_colour(ref_matched, mov_matched, valid_small)
    timings["normalisation"] = time.perf_counter() - start

    start = time.perf_counter()
    result = detect_change(ref_lab, mov_lab, valid_small, lesion_mask=outline_small, site_mask=site_small,
                           saturated=(_saturated(ref_matched), _saturated(mov_matched)),
                           clinical=modality == CLINICAL,
                           classify=classify_change if learned_regions_enabled() else None)
    timings["change"] = time.perf_counter() - start

    start = time.perf_counter()
    aligned = cv2.warpPerspective(moving_image, alignment.homography, (w, h),
                                  flags=cv2.INTER_LINEAR)
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
    site_flag = flag and any(r["in_site"] and r["score"] >= FLAG_THRESHOLD for r in regions)
    if regions:
        reasons = describe_changes(regions)
    elif result.score >= FLAG_THRESHOLD:
        reasons = ["a faint, scattered colour change without a clear outline"]
    else:
        reasons = ["no relevant change found"]
    if not quality.usable:
        reasons += quality.reasons
    return PairAnalysis(
        quality, True, alignment.homography, alignment.confidence, aligned,
        valid_mask, change_mask, result.score, heatmap, regions, reasons, timings, flag,
        result.features, modality=modality, outline=outline, site_mask=site_mask, site_flag=site_flag,
    )
