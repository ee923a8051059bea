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


#: Window (share of the long side) of the median that stands for the skin around a lesion in a
#: phone photo: wider than a lesion, narrower than the light's fall-off across the photo.
_SKIN_WINDOW = 0.7
#: Smallest colour difference (CIELAB, lightening at half weight) from that skin that can be lesion.
_MIN_CONTRAST = 5.0
#: Working long side (px) of the phone-photo segmentation.
_CLINICAL_SIDE = 256


def _local_skin(lab, skin):
    """Median CIELAB of the skin in a wide window around each pixel; shape (M, N, 3), float32."""
    h, w = skin.shape
    size = int(_SKIN_WINDOW * max(h, w)) | 1
    fill = np.where(skin[..., None], lab, np.median(lab[skin], axis=0) if skin.any() else 0)
    offsets = (0.0, 128.0, 128.0)
    scales = (2.55, 1.0, 1.0)
    out = np.empty_like(lab)
    for c in range(3):
        channel = np.clip((fill[..., c] + offsets[c]) * scales[c], 0, 255).astype(np.uint8)
        out[..., c] = cv2.medianBlur(channel, size).astype(np.float32) / scales[c] - offsets[c]
    return out


def segment_clinical_lesion(image, *, skin_mask):
    """Segment the lesion or scar in a phone photo of skin.

    The lesion is what differs in colour from the skin around it (darker, redder, browner, paler),
    measured against a wide median of the skin so that uneven light does not count; thin dark hair
    is closed over first and surgical ink (blue-purple) is never lesion. Of the candidate parts, the
    one with the best size, contrast and closeness to the centre is kept.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
        RGB phone photo.
    skin_mask : ndarray, shape (M, N), bool
        The skin (:func:`registration.segment_skin`).

    Returns
    -------
    mask : ndarray, shape (M, N), bool
        The lesion; all False when nothing stands out.
    """
    image = _check_rgb(image, "image")
    h, w = image.shape[:2]
    skin_mask = np.asarray(skin_mask).astype(bool)
    if skin_mask.shape != (h, w):
        raise ValueError("skin_mask must have the photo's height and width.")
    scale = min(1.0, _CLINICAL_SIDE / max(h, w))
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else image
    sh, sw = small.shape[:2]
    skin = cv2.resize(skin_mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
    inner = cv2.erode(skin.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if inner.sum() < 100:
        return np.zeros((h, w), bool)
    hairless = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    lab = cv2.cvtColor(hairless, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    around = _local_skin(lab, skin)
    darker = around[..., 0] - lab[..., 0]
    contrast = np.sqrt(np.maximum(darker, 0) ** 2 + (0.5 * np.minimum(darker, 0)) ** 2
                       + (lab[..., 1] - around[..., 1]) ** 2 + (lab[..., 2] - around[..., 2]) ** 2)
    contrast = cv2.GaussianBlur(contrast, (0, 0), 1.5)
    ink = (lab[..., 2] < -6) & (np.hypot(lab[..., 1], lab[..., 2]) > 12)
    ink = cv2.dilate(ink.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    values = np.clip(contrast[inner] * 4, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    candidate = ((contrast > max(otsu / 4, _MIN_CONTRAST)) & inner & ~ink).astype(np.uint8)
    candidate = cv2.morphologyEx(candidate, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    strength = np.bincount(labels.ravel(), contrast.ravel(), minlength=n) / np.maximum(stats[:, 4], 1)
    best, best_score = 0, 0.0
    for i in range(1, n):
        area = stats[i, cv2.CC_STAT_AREA]
        if area < 0.002 * sh * sw:
            continue
        dist = np.linalg.norm((centroids[i] - (sw / 2, sh / 2)) / (sw, sh))
        score = area * strength[i] * (1.0 - dist) ** 2
        if score > best_score:
            best, best_score = i, score
    if best == 0:
        return np.zeros((h, w), bool)
    found = binary_fill_holes(labels == best).astype(np.uint8)
    return cv2.resize(found, (w, h), interpolation=cv2.INTER_NEAREST) > 0
