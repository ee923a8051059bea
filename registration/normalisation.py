"""Colour and illumination normalisation of an aligned follow-up to its baseline."""

import cv2
import numpy as np
from scipy.ndimage import median_filter

#: Robust fitting rounds; each drops pixels whose residual is large (changed skin).
_ROUNDS = 3
#: Pixels sampled for the fit (speed; the model has few parameters).
_SAMPLES = 20000
#: Gaussian blurs tried, in order, when matching the sharpness of two photos.
_BLUR_STEPS = (0.5, 0.75, 1.0, 1.3, 1.7, 2.2, 3.0)
#: Grid cell, in pixels, of the local (shadow) correction.
_CELL = 24
#: Share of the overlap, the most different after a rough match, that the
#: sharpness comparison leaves out: new hair, ink or a new lesion is no detail.
_DIFFERENT_SHARE = 0.1


def _terms(values, x, y):
    """Regressors: tone curve (value, value^2) and a quadratic light field.

    `x` and `y` may broadcast against `values` (a row and a column for an image).
    """
    return [np.ones_like(values), values, values * values, x, y, x * x, x * y, y * y,
            values * x, values * y]


def _design(values, x, y):
    """Design matrix, shape (P, 10), of :func:`_terms` for P sampled pixels."""
    return np.stack(_terms(values, x, y), axis=-1)


def _robust_fit(design, target, rounds=_ROUNDS):
    keep = np.ones(len(target), bool)
    coef = np.zeros(design.shape[1])
    for _ in range(rounds):
        if keep.sum() < design.shape[1] * 4:
            break
        coef, *_ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
        residual = np.abs(design @ coef - target)
        sigma = 1.4826 * np.median(residual[keep]) + 1e-6
        keep = residual < 2.5 * sigma
    return coef


def _local_offset(difference, valid):
    """Smooth, large-scale residual (shadows, uneven light) from a robust grid median.

    A median over cells about 5 cells across ignores changes smaller than
    about half that window, so lesions stay while shadows are removed.
    Computed on a 4x smaller copy (the offset is smooth anyway).
    """
    h, w = difference.shape
    weight = cv2.resize(valid.astype(np.float32), (max(1, w // 4), max(1, h // 4)),
                        interpolation=cv2.INTER_AREA)
    small = cv2.resize(difference * valid, weight.shape[::-1], interpolation=cv2.INTER_AREA)
    small = np.where(weight > 0.5, small / np.maximum(weight, 1e-3), np.nan)
    cell = _CELL // 4
    gh, gw = max(1, small.shape[0] // cell), max(1, small.shape[1] // cell)
    blocks = small[: gh * cell, : gw * cell].reshape(gh, cell, gw, cell).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(gh, gw, cell * cell)
    enough = np.isfinite(blocks).sum(axis=2) > cell * cell // 4
    cells = np.full((gh, gw), np.nan, np.float32)
    if enough.any():
        cells[enough] = np.nanmedian(blocks[enough], axis=1)
    fill = np.nanmedian(cells) if np.isfinite(cells).any() else 0.0
    cells = np.where(np.isfinite(cells), cells, fill).astype(np.float32)
    cells = median_filter(cells, size=5, mode="nearest")
    cells = cv2.GaussianBlur(cells, (0, 0), 1.0)
    return cv2.resize(cells, (w, h), interpolation=cv2.INTER_LINEAR)


def _grey(image, sigma):
    """Grey float32 copy of an RGB uint8 image, smoothed with a Gaussian of `sigma` px."""
    return cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), sigma)


def _detail(image, valid):
    """Mean gradient energy of a lightly smoothed grey copy (noise mostly ignored)."""
    grey = _grey(image, 1.0)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    return float(np.mean((gx * gx + gy * gy)[valid])) if valid.any() else 0.0


def _shared_scene(reference_image, moving_image, inner):
    """Pixels of `inner` (bool, shape (M, N)) where both photos show about the same.

    Blurred greys are standardised inside `inner`; the most different
    ``_DIFFERENT_SHARE`` of it, with 3 px around (the gradient's reach), is left
    out. Falls back to `inner` when too little would remain.
    """
    if inner.sum() < 500:
        return inner
    standard = []
    for image in (reference_image, moving_image):
        grey = _grey(image, 2.0)
        standard.append((grey - grey[inner].mean()) / (grey[inner].std() + 1e-6))
    difference = np.abs(standard[0] - standard[1])
    different = (difference > np.quantile(difference[inner], 1 - _DIFFERENT_SHARE)).astype(np.uint8)
    shared = inner & (cv2.dilate(different, np.ones((7, 7), np.uint8)) == 0)
    return shared if shared.sum() >= 500 else inner


def match_blur(reference_image, moving_image, valid_mask):
    """Blur the sharper of two aligned photos so both show the same detail.

    A follow-up is often softer than its baseline (focus, motion, JPEG);
    compared as they are, every sharp edge would look changed.

    Parameters
    ----------
    reference_image, moving_image : ndarray, shape (M, N, 3), uint8
        Baseline and follow-up in the same frame.
    valid_mask : ndarray, shape (M, N), bool
        Pixels both photos show.

    Returns
    -------
    reference_image, moving_image : ndarray, shape (M, N, 3), uint8
        The same photos, the sharper one blurred with the Gaussian (sigma up to
        3 px) that best matches the other's detail energy on the scene both
        show alike.
    """
    inner = cv2.erode(valid_mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    # New hair's strong edges would pass for a sharper follow-up, which then
    # gets blurred: compare detail only where the photos show the same scene.
    inner = _shared_scene(reference_image, moving_image, inner)
    ref_detail = _detail(reference_image, inner)
    mov_detail = _detail(moving_image, inner)
    sharp, soft, target = ((reference_image, moving_image, mov_detail) if ref_detail > mov_detail
                           else (moving_image, reference_image, ref_detail))
    best, best_gap = sharp, abs(np.log((max(ref_detail, mov_detail) + 1e-6) / (target + 1e-6)))
    for sigma in _BLUR_STEPS:
        blurred = cv2.GaussianBlur(sharp, (0, 0), sigma)
        gap = abs(np.log((_detail(blurred, inner) + 1e-6) / (target + 1e-6)))
        if gap >= best_gap:
            break
        best, best_gap = blurred, gap
    return (best, soft) if sharp is reference_image else (soft, best)


def normalise_colour(reference_image, moving_image, valid_mask, *, seed=0):
    """Match the aligned follow-up's colours and lighting to the baseline.

    A per-channel tone curve with a quadratic illumination field is fitted in
    CIELAB on pixels that agree (iteratively trimmed), then a smooth local
    offset removes shadows and uneven light.

    Parameters
    ----------
    reference_image : ndarray, shape (M, N, 3), uint8
        Baseline RGB photo.
    moving_image : ndarray, shape (M, N, 3), uint8
        Follow-up already warped into the baseline frame.
    valid_mask : ndarray, shape (M, N), bool
        Pixels both photos show.
    seed : int, optional
        Seed of the pixel sample used for the fit.

    Returns
    -------
    reference_lab, moving_lab : ndarray, shape (M, N, 3), float32
        CIELAB (L in 0-100) of the baseline and of the normalised follow-up.
    """
    if reference_image.shape != moving_image.shape:
        raise ValueError(
            "reference_image and moving_image must have the same shape; "
            "warp the follow-up into the baseline frame first."
        )
    if valid_mask.shape != reference_image.shape[:2]:
        raise ValueError("valid_mask must have the shape of the images (M, N).")
    ref = cv2.cvtColor(reference_image.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    mov = cv2.cvtColor(moving_image.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    h, w = valid_mask.shape
    ys, xs = np.nonzero(valid_mask)
    if len(xs) < 200:
        return ref, mov
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(xs), min(_SAMPLES, len(xs)), replace=False)
    xs, ys = xs[pick], ys[pick]
    xn, yn = xs / w - 0.5, ys / h - 0.5
    gx = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :]
    gy = (np.arange(h, dtype=np.float32) / h - 0.5)[:, None]
    out = np.empty_like(mov)
    for c in range(3):
        scale = 100.0 if c == 0 else 50.0
        coef = _robust_fit(_design(mov[ys, xs, c] / scale, xn, yn),
                           ref[ys, xs, c] / scale).astype(np.float32)
        terms = _terms(mov[..., c] / scale, gx, gy)
        out[..., c] = sum(k * t for k, t in zip(coef, terms)) * scale
    for c in range(3):
        out[..., c] += _local_offset(ref[..., c] - out[..., c], valid_mask)
    return ref, out
