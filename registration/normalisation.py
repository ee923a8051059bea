"""Colour and illumination normalisation of an aligned follow-up to its baseline."""

import cv2
import numpy as np
from scipy.ndimage import median_filter

#: Robust fitting rounds; each drops pixels whose residual is large (changed skin).
_ROUNDS = 3
#: Pixels sampled for the fit (speed; the model has few parameters).
_SAMPLES = 20000
#: Grid cell, in pixels, of the local (shadow) correction.
_CELL = 24


def _design(values, x, y):
    """Per-pixel regressors: tone curve (value, value^2) and a quadratic light field."""
    return np.stack(
        [np.ones_like(x), values, values * values, x, y, x * x, x * y, y * y,
         values * x, values * y],
        axis=1,
    )


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
    """
    h, w = difference.shape
    gh, gw = max(1, h // _CELL), max(1, w // _CELL)
    cells = np.full((gh, gw), np.nan, np.float32)
    d = difference[: gh * _CELL, : gw * _CELL].reshape(gh, _CELL, gw, _CELL)
    v = valid[: gh * _CELL, : gw * _CELL].reshape(gh, _CELL, gw, _CELL)
    for i in range(gh):
        for j in range(gw):
            sel = v[i, :, j, :]
            if sel.sum() > _CELL * _CELL // 4:
                cells[i, j] = np.median(d[i, :, j, :][sel])
    fill = np.nanmedian(cells) if np.isfinite(cells).any() else 0.0
    cells = np.where(np.isfinite(cells), cells, fill).astype(np.float32)
    cells = median_filter(cells, size=5, mode="nearest")
    cells = cv2.GaussianBlur(cells, (0, 0), 1.0)
    return cv2.resize(cells, (w, h), interpolation=cv2.INTER_LINEAR)


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
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32) / w - 0.5,
                         np.arange(h, dtype=np.float32) / h - 0.5)
    out = np.empty_like(mov)
    for c in range(3):
        scale = 100.0 if c == 0 else 50.0
        coef = _robust_fit(_design(mov[ys, xs, c] / scale, xn, yn),
                           ref[ys, xs, c] / scale)
        full = _design(mov[..., c].ravel() / scale, gx.ravel(), gy.ravel()) @ coef
        out[..., c] = full.reshape(h, w) * scale
    for c in range(3):
        out[..., c] += _local_offset(ref[..., c] - out[..., c], valid_mask)
    return ref, out
