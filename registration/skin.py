"""Skin segmentation: which pixels of a phone photo show the patient's skin.

Skin colour is learned from the photo itself: the skin around the site (or, without a site, the
photo's central part, where patients put the scar) gives a robust model of its chromaticity, which
holds across skin tones (Fitzpatrick I-VI differ mostly in lightness and saturation, not in hue),
under shading (chromaticity of linear RGB ignores the light's strength) and after the phone's white
balance. A pixel is skin when its chromaticity is close to that model and its hue is a skin hue.
What is around the body part is left out: clothing, drapes, paper, a reference card, furniture of
another colour. Skin-coloured surroundings (light wood, a beige wall) and fingernails can pass as
skin when they touch it; they are only left out when they are separated from it.
"""

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes

from ._imageutil import _check_rgb, _resize

#: Long side (px) the segmentation works at; the mask is scaled back to the photo's size.
_SKIN_SIDE = 256
#: Mahalanobis distance (in chromaticity) within which a pixel is skin.
_MAX_DISTANCE = 3.5
#: Smallest spread (rg chromaticity) of the skin model: one photo's skin is more uniform than skin
#: under another light, and the spread must not shrink to the noise.
_MIN_SPREAD = 0.012
#: Largest hue difference (degrees, CIELAB a*b*) from the photo's skin: blue drapes, green
#: gowns and purple ink are far from any skin under any white balance.
_MAX_HUE_SHIFT = 50.0
#: Below this chroma a hue means nothing; such pixels are judged by chromaticity alone.
_MIN_HUE_CHROMA = 6.0
#: Below this lightness (CIELAB L) nothing can be told apart: not skin.
_MIN_LIGHTNESS = 6.0
#: A component away from the seed counts only when at least this share of the photo.
_MIN_OTHER_AREA = 0.03


def _chromaticity(image):
    """rg chromaticity of linear RGB, shape (M, N, 2), float32: independent of the light's strength."""
    linear = (image.astype(np.float32) / 255.0) ** 2.2
    total = linear.sum(axis=-1, keepdims=True) + 1e-4
    return (linear[..., :2] / total).astype(np.float32)


def _seed(shape, site_mask):
    """Pixels assumed to be skin: a ring around the site, or the photo's central part."""
    h, w = shape
    if site_mask is not None and site_mask.any():
        size = max(3, int(0.06 * max(h, w)) | 1)
        outer = cv2.dilate(site_mask.astype(np.uint8), np.ones((size * 3, size * 3), np.uint8))
        inner = cv2.dilate(site_mask.astype(np.uint8), np.ones((size, size), np.uint8))
        ring = (outer > 0) & (inner == 0)
        if ring.sum() >= 50:
            return ring
    seed = np.zeros(shape, bool)
    seed[int(0.2 * h):int(0.8 * h), int(0.2 * w):int(0.8 * w)] = True
    if site_mask is not None:
        seed &= ~site_mask
    return seed


def _model(chroma, seed):
    """Robust mean and inverse covariance of the seed's chromaticity (its dominant colour)."""
    values = chroma[seed]
    centre = np.median(values, axis=0)
    # The seed may hold a lesion, ink or hair: keep the half closest to the median, then refit.
    for _ in range(2):
        d = np.linalg.norm(values - centre, axis=1)
        close = values[d <= np.quantile(d, 0.6)]
        centre = close.mean(axis=0)
    cov = np.cov(close.T) * 2.5 + np.eye(2) * _MIN_SPREAD**2
    return centre, np.linalg.inv(cov)


def skin_likeness(image, *, site_mask=None):
    """Per-pixel Mahalanobis distance to the photo's own skin colour (low = skin-like).

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
        RGB photo, at any size (a small copy is best: this works per pixel).
    site_mask : ndarray, shape (M, N), bool, optional
        The lesion or scar; the skin around it teaches the model.

    Returns
    -------
    distance : ndarray, shape (M, N), float32
        Infinite where the hue or the lightness rules out skin.
    """
    image = _check_rgb(image, "image")
    h, w = image.shape[:2]
    if site_mask is not None:
        site_mask = np.asarray(site_mask).astype(bool)
        if site_mask.shape != (h, w):
            raise ValueError("site_mask must have the photo's height and width.")
    chroma = _chromaticity(image)
    seed = _seed((h, w), site_mask)
    centre, inverse = _model(chroma, seed)
    diff = chroma - centre
    distance = np.sqrt(np.einsum("...i,ij,...j->...", diff, inverse, diff))
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float32)
    lightness = lab[..., 0] * (100.0 / 255.0)
    a, b = lab[..., 1] - 128, lab[..., 2] - 128
    close = seed & (distance <= np.median(distance[seed]))
    skin_hue = np.arctan2(np.median(b[close]), np.median(a[close]))
    shift = np.degrees(np.abs(np.angle(np.exp(1j * (np.arctan2(b, a) - skin_hue)))))
    plausible = ((shift <= _MAX_HUE_SHIFT) | (np.hypot(a, b) < _MIN_HUE_CHROMA)) & (lightness >= _MIN_LIGHTNESS)
    return np.where(plausible, distance, np.inf).astype(np.float32)


def segment_skin(image, *, site_mask=None):
    """Segment the skin in a photo: the body part around the site, without its surroundings.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
        RGB photo.
    site_mask : ndarray, shape (M, N), bool, optional
        The lesion or scar (always counted as skin, whatever its colour: a wound, an ulcer).

    Returns
    -------
    skin : ndarray, shape (M, N), bool
        Skin, with the lesions, hair and ink lines inside it; the site itself included.
    """
    image = _check_rgb(image, "image")
    h, w = image.shape[:2]
    scale = min(1.0, _SKIN_SIDE / max(h, w))
    small = _resize(image, scale)
    sh, sw = small.shape[:2]
    site_small = None
    if site_mask is not None:
        site_mask = np.asarray(site_mask).astype(bool)
        if site_mask.shape != (h, w):
            raise ValueError("site_mask must have the photo's height and width.")
        site_small = cv2.resize(site_mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
    distance = skin_likeness(cv2.GaussianBlur(small, (0, 0), 1.0), site_mask=site_small)
    skin = (distance <= _MAX_DISTANCE).astype(np.uint8)
    skin = cv2.medianBlur(skin, 5)
    skin = cv2.morphologyEx(skin, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(skin, connectivity=8)
    seed = _seed((sh, sw), site_small)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[seed & (skin > 0)])] = True
    keep |= stats[:, cv2.CC_STAT_AREA] >= _MIN_OTHER_AREA * sh * sw
    keep[0] = False
    mask = keep[labels]
    if site_small is not None:
        mask |= site_small
    # Lesions, hair and ink inside the skin are on the skin; a hole open to the border is not.
    mask = binary_fill_holes(mask)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR) > 0
    if site_mask is not None:
        mask |= site_mask
    return mask
