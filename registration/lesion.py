"""Segmentation of the lesion (or scar) in the baseline photo."""

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes

from ._imageutil import VIGNETTE, _check_rgb, _field_mask

#: Weight of chroma above the skin's against darkness when telling lesion from skin.
_CHROMA_WEIGHT = 1.0


def segment_lesion(image, *, field_mask=None):
    """Segment the dark lesion or scar in a skin photo.

    Otsu's threshold on smoothed darkness plus colourfulness relative to the
    skin, inside the photographed field (dermoscope vignetting left out),
    keeping the component with the best size-and-centrality score.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
        RGB photo.
    field_mask : ndarray, shape (M, N), bool, optional
        The photographed field; computed when omitted (vignetting excluded).

    Returns
    -------
    mask : ndarray, shape (M, N), bool
        The lesion; all False when no distinct dark area stands out.
    """
    image = _check_rgb(image, "image")
    field = _field_mask(image, relative=VIGNETTE) if field_mask is None else field_mask
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float32)
    inner = cv2.erode(field.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    if inner.sum() < 100:
        return np.zeros(field.shape, bool)
    # Lesions and scars are darker or more coloured than the skin around them
    # (a pale pink lesion barely darker than skin still stands out in chroma).
    chroma = np.hypot(lab[..., 1] - 128, lab[..., 2] - 128)
    darkness = (np.median(lab[..., 0][inner]) - lab[..., 0]
                + _CHROMA_WEIGHT * (chroma - np.median(chroma[inner])))
    level = cv2.GaussianBlur(128 - darkness, (0, 0), 2.0)
    values = np.clip(level[inner], 0, 255).astype(np.uint8)
    threshold, _ = cv2.threshold(values.reshape(-1, 1), 0, 255,
                                 cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = (level < threshold) & inner
    # Dermoscope vignetting is dark too but hugs the border; open to drop specks.
    dark = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(dark, connectivity=8)
    if n <= 1:
        return np.zeros(field.shape, bool)
    h, w = field.shape
    centre = np.array([w / 2, h / 2])
    best, best_score = 0, 0.0
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if area < 0.001 * h * w:
            continue
        touches = x <= 1 or y <= 1 or x + bw >= w - 1 or y + bh >= h - 1
        dist = np.linalg.norm((centroids[i] - centre) / [w, h])
        score = area * (1.0 - dist) * (0.3 if touches else 1.0)
        if score > best_score:
            best, best_score = i, score
    if best == 0:
        return np.zeros(field.shape, bool)
    return binary_fill_holes(labels == best)
