"""Alignment of a follow-up photo to the baseline photo of the same site.

Features (SIFT on contrast-equalised grey) give a robust homography
(MAGSAC), which an intensity-based ECC refinement on high-passed images makes
sub-pixel accurate; the ECC correlation then verifies the result, so a wrong
alignment is refused instead of returned.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

from ._imageutil import (
    _analysis_scale,
    _check_rgb,
    _field_mask,
    _homography_is_sane,
    _resize,
    _resize_matrix,
)
from .modality import CLINICAL, detect_modality
from .skin import segment_skin

#: Minimum MAGSAC inliers for a feature homography to be considered at all.
_MIN_INLIERS = 12
#: Minimum ECC correlation (high-passed grey, overlap only) of an accepted alignment.
_MIN_CORRELATION = 0.35
#: With this many inliers the feature homography is trusted even at low correlation
#: (a grown lesion lowers the correlation of a correct alignment).
_TRUSTED_INLIERS = 30
#: A refinement that moves any grid point further than this (analysis px) is distrusted.
_MAX_REFINE_SHIFT = 4.0

#: Long side of the copy that features are detected on.
_FEATURE_LONG_SIDE = 400

_SIFT = None
_CLAHE = None


@dataclass
class Alignment:
    """Result of :func:`align`.

    Attributes
    ----------
    registered : bool
        True when the follow-up could be aligned with confidence.
    homography : ndarray, shape (3, 3), float64, or None
        Maps follow-up pixel (x, y, 1) to baseline pixel coordinates at full
        resolution, origin at the top-left pixel's centre.
    confidence : float
        0-1, how much the alignment is trusted.
    inliers : int
        Feature matches consistent with the homography.
    correlation : float
        ECC correlation of the aligned high-passed grey images.
    overlap : float
        Share of the baseline's field that the follow-up shows.
    reasons : list of str
        Why an alignment was refused (empty when registered).
    """

    registered: bool
    homography: np.ndarray | None
    confidence: float
    inliers: int = 0
    correlation: float = 0.0
    overlap: float = 0.0
    reasons: list = field(default_factory=list)


def _tools():
    global _SIFT, _CLAHE
    if _SIFT is None:
        _SIFT = cv2.SIFT_create(nfeatures=2000, contrastThreshold=0.02)
        _CLAHE = cv2.createCLAHE(clipLimit=2.5, tileGridSize=(8, 8))
    return _SIFT, _CLAHE


@dataclass
class _Prepared:
    """A photo at the analysis resolution, as alignment and comparison use it."""

    small: np.ndarray  # RGB, shape (m, n, 3), uint8
    grey: np.ndarray  # shape (m, n), uint8
    mask: np.ndarray  # bool (m, n): what may be matched (the skin of a phone photo, or the field)
    field: np.ndarray  # bool (m, n): what the photo shows at all (not a dermoscope's black surround)
    to_small: np.ndarray  # 3x3: full-resolution pixel -> analysis pixel


def _prepare(image, *, small=None, mask=None, skin=False):
    """The analysis-resolution copy of `image` (:class:`_Prepared`).

    What may be matched is `mask` when given, else the skin (`skin`: a phone photo) or the
    photographed field. `small` is the analysis-resolution copy when the caller already has it.
    """
    if small is None:
        small = _resize(image, _analysis_scale(image.shape, upscale=True))
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    field = _field_mask(small)
    if mask is None:
        mask = field & segment_skin(small) if skin else field
    return _Prepared(small, grey, mask, field, _resize_matrix(image.shape, small.shape))


def _high_pass(grey, mask):
    """Zero-mean detail image: removes illumination gradients and shadows.

    The band next to the field edge and the image border is zeroed, and
    extremes are clipped, so that edge artefacts cannot dominate ECC.
    """
    g = grey.astype(np.float32)
    m = mask.astype(np.float32)
    blur = cv2.GaussianBlur(g * m, (0, 0), 6.0)
    weight = cv2.GaussianBlur(m, (0, 0), 6.0)
    hp = cv2.GaussianBlur(g - blur / np.maximum(weight, 1e-3), (0, 0), 1.0)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((15, 15), np.uint8))
    inner[:8], inner[-8:], inner[:, :8], inner[:, -8:] = 0, 0, 0, 0
    hp *= inner
    limit = 3.0 * float(hp[inner > 0].std()) if inner.any() else 1.0
    return np.clip(hp, -limit, limit)


def _feature_homography(ref_grey, ref_mask, mov_grey, mov_mask, *, held_back=None):
    """Feature-based homography at a reduced size (speed), in analysis pixels.

    Baseline keypoints inside `held_back` (bool, the baseline's analysis size: the scar or
    lesion) are left out of the first fit: a lesion that grew follows its own motion, and only
    the skin around it says how the camera moved. When the skin alone gives too few matches,
    all keypoints are fitted and the camera's motion is chosen among the models found.
    """
    sift, clahe = _tools()
    points = []
    for grey, mask in ((mov_grey, mov_mask), (ref_grey, ref_mask)):
        scale = min(1.0, _FEATURE_LONG_SIDE / max(grey.shape))
        small = clahe.apply(_resize(grey, scale))
        # Keep keypoints away from the field edge: the black surround's corners
        # move with the camera, not with the skin.
        small_mask = cv2.erode(_resize(mask.astype(np.uint8), scale, cv2.INTER_NEAREST),
                               np.ones((7, 7), np.uint8))
        kp, des = sift.detectAndCompute(small, small_mask)
        if des is None or len(kp) < 4:
            return None, 0
        back = np.linalg.inv(_resize_matrix(grey.shape, small.shape))
        xy = np.float32([k.pt for k in kp])
        xy = (back[:2, :2] @ xy.T + back[:2, 2:]).T.astype(np.float32)
        points.append((xy, des))
    (src_all, des_m), (dst_all, des_r) = points
    # FLANN's randomised trees draw from OpenCV's global generator: seeding it
    # makes the same two photos give the same alignment (and analysis) every time.
    cv2.setRNGSeed(0)
    matcher = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 48})
    pairs = matcher.knnMatch(des_m, des_r, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.85 * p[1].distance]
    src = src_all[[m.queryIdx for m in good]].reshape(-1, 2)
    dst = dst_all[[m.trainIdx for m in good]].reshape(-1, 2)
    if held_back is not None and held_back.any() and len(dst):
        x = np.clip(np.round(dst[:, 0]).astype(int), 0, held_back.shape[1] - 1)
        y = np.clip(np.round(dst[:, 1]).astype(int), 0, held_back.shape[0] - 1)
        skin = ~held_back[y, x]
        matrix, inliers = _select_model(src[skin], dst[skin])
        if matrix is not None and inliers >= _MIN_INLIERS:
            return matrix, inliers
    return _select_model(src, dst)


def _fit_models(src, dst, count=3):
    """Up to `count` homographies found one after another on the leftover matches."""
    models = []
    remaining = np.arange(len(src))
    for _ in range(count):
        if len(remaining) < _MIN_INLIERS:
            break
        matrix, inl = cv2.findHomography(
            src[remaining], dst[remaining], cv2.USAC_MAGSAC, 2.5,
            maxIters=5000, confidence=0.999,
        )
        if matrix is None or inl is None or inl.sum() < _MIN_INLIERS:
            break
        inl = inl.ravel().astype(bool)
        if _homography_is_sane(matrix):
            models.append((matrix, remaining[inl]))
        remaining = remaining[~inl]
    return models


def _select_model(src, dst):
    """Pick the camera motion among the fitted models.

    When a lesion grows, its texture follows a second homography (the skin's
    motion plus an enlargement) that can outvote the sparse skin texture. A
    well-supported later model replaces the leading one when its inliers
    surround the leading model's, or when, seen from the later model, the
    leading one shrinks the follow-up (i.e. it fits an enlarged lesion).
    """
    models = _fit_models(src, dst)
    if not models:
        return None, 0
    best, best_idx = models[0]
    for matrix, idx in models[1:]:
        if len(idx) < max(20, 0.1 * len(best_idx)):
            continue
        relative = best @ np.linalg.inv(matrix)
        shrink = np.linalg.det(relative[:2, :2] / relative[2, 2]) < 0.9
        hull = cv2.convexHull(dst[idx])
        inside = np.mean([
            cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0
            for x, y in dst[best_idx]
        ])
        if shrink or inside >= 0.7:
            best, best_idx = matrix, idx
    return best, len(best_idx)


def _grid(shape, n=8):
    h, w = shape
    xs, ys = np.meshgrid(np.linspace(0, w - 1, n), np.linspace(0, h - 1, n))
    return np.stack([xs.ravel(), ys.ravel(), np.ones(n * n)])


def _ecc_refine(ref_hp, mov_hp, mov_mask, matrix):
    """ECC homography refinement at half the analysis size; returns (matrix, correlation).

    Half size keeps the refinement sub-pixel at full resolution for a
    quarter of the cost (the feature homography is already within a pixel
    or two).
    """
    ref_small, mov_small = _resize(ref_hp, 0.5), _resize(mov_hp, 0.5)
    mask_small = _resize(mov_mask.astype(np.uint8), 0.5, cv2.INTER_NEAREST)
    to_ref = _resize_matrix(ref_hp.shape, ref_small.shape)
    to_mov = _resize_matrix(mov_hp.shape, mov_small.shape)
    # ECC warps the input (follow-up) onto the template (baseline) with the
    # inverse mapping, baseline -> follow-up.
    warp = (to_mov @ np.linalg.inv(matrix) @ np.linalg.inv(to_ref)).astype(np.float32)
    warp /= warp[2, 2]
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 1e-4)
    try:
        cc, warp = cv2.findTransformECC(
            ref_small, mov_small, warp, cv2.MOTION_HOMOGRAPHY, criteria, mask_small, 3,
        )
    except cv2.error:
        return None, 0.0
    refined = np.linalg.inv(to_ref) @ np.linalg.inv(warp.astype(np.float64)) @ to_mov
    return refined / refined[2, 2], float(cc)


def _correlation(ref_hp, ref_mask, mov_hp, mov_mask, matrix):
    """Normalised correlation of the high-passed images inside the overlap."""
    h, w = ref_hp.shape
    warped = cv2.warpPerspective(mov_hp, matrix, (w, h), flags=cv2.INTER_LINEAR)
    valid = cv2.warpPerspective(mov_mask.astype(np.uint8), matrix, (w, h),
                                flags=cv2.INTER_NEAREST).astype(bool) & ref_mask
    if valid.sum() < 500:
        return 0.0, valid
    a = ref_hp[valid] - ref_hp[valid].mean()
    b = warped[valid] - warped[valid].mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return (float((a * b).sum() / denom) if denom > 0 else 0.0), valid


def align(reference_image, moving_image, *, modality=None):
    """Align a follow-up photo to the baseline.

    Parameters
    ----------
    reference_image : ndarray, shape (M, N, 3), uint8
        Baseline RGB photo.
    moving_image : ndarray, shape (P, Q, 3), uint8
        Follow-up RGB photo of the same site.
    modality : {'clinical', 'dermoscopy'}, optional
        Detected from the baseline when omitted; phone photos are matched on skin only.

    Returns
    -------
    alignment : Alignment
        ``homography`` maps follow-up full-resolution pixel coordinates
        (x, y, 1) to baseline ones; None with ``registered=False`` and reasons
        when no trustworthy alignment was found.
    """
    reference_image = _check_rgb(reference_image, "reference_image")
    moving_image = _check_rgb(moving_image, "moving_image")
    skin = (detect_modality(reference_image) if modality is None else modality) == CLINICAL
    return _align_prepared(_prepare(reference_image, skin=skin), _prepare(moving_image, skin=skin))


def _align_prepared(reference, moving, *, outline=None):
    """:func:`align` on :class:`_Prepared` photos (shared with the pipeline).

    `outline` (bool, the reference's analysis size) is the scar or lesion, held back from the
    first feature fit (see :func:`_feature_homography`).
    """
    ref_grey, ref_mask, ref_to_small = reference.grey, reference.mask, reference.to_small
    mov_grey, mov_mask, mov_to_small = moving.grey, moving.mask, moving.to_small
    if ref_mask.mean() < 0.05 or mov_mask.mean() < 0.05:
        return Alignment(False, None, 0.0,
                         reasons=["the photo shows almost no skin to match"])

    held_back = None
    if outline is not None and outline.any():
        held_back = cv2.dilate(outline.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    matrix, inliers = _feature_homography(ref_grey, ref_mask, mov_grey, mov_mask, held_back=held_back)
    refuse = ["this photo could not be matched to the baseline photo — "
              "make sure it shows the same spot, in focus"]
    if matrix is None or inliers < _MIN_INLIERS or not _homography_is_sane(matrix):
        return Alignment(False, None, 0.0, inliers=inliers, reasons=refuse)

    ref_hp = _high_pass(ref_grey, ref_mask)
    mov_hp = _high_pass(mov_grey, mov_mask)
    refined, _ = _ecc_refine(ref_hp, mov_hp, mov_mask, matrix)
    if refined is not None and _homography_is_sane(refined):
        grid = _grid(mov_grey.shape)
        a = matrix @ grid
        b = refined @ grid
        shift = np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0).max()
        if shift <= _MAX_REFINE_SHIFT:
            matrix = refined
    corr, valid = _correlation(ref_hp, ref_mask, mov_hp, mov_mask, matrix)
    overlap = float(valid.sum() / max(ref_mask.sum(), 1))

    # Either strong feature support or a high photometric agreement is
    # convincing on its own.
    confidence = float(max(np.clip((inliers - _MIN_INLIERS) / 40.0, 0, 1),
                           np.clip((corr - 0.2) / 0.4, 0, 1)))
    full = np.linalg.inv(ref_to_small) @ matrix @ mov_to_small
    full /= full[2, 2]
    # Many MAGSAC inliers after the ratio test do not happen by chance; the
    # correlation check guards the weakly supported cases.
    trusted = inliers >= _TRUSTED_INLIERS or corr >= _MIN_CORRELATION
    if not trusted or overlap < 0.1:
        return Alignment(False, None, confidence, inliers, corr, overlap, refuse)
    return Alignment(True, full, confidence, inliers, corr, overlap)
