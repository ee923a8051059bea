"""Helpers shared across the test packages: synthetic photos."""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image


def skin_photo(seed, shape=(360, 480)):
    """A textured skin photo with one irregular brown lesion.

    Returns
    -------
    image : ndarray, shape (M, N, 3), uint8
    lesion : ndarray, shape (M, N), bool
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    texture = np.zeros((h, w), np.float32)
    for sigma, amp in ((1.0, 0.05), (3.0, 0.06), (12.0, 0.08)):
        noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), sigma)
        texture += amp * noise / noise.std()
    skin = np.array(rng.uniform([200, 150, 125], [235, 185, 160]), np.float32)
    img = skin[None, None] * (1 + texture[..., None])
    for _ in range(rng.integers(60, 90)):  # freckles and pores: features to match
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(1.0, 3.5)
        cv2.circle(img, (int(x * 16), int(y * 16)), int(r * 16), [float(v) for v in skin * rng.uniform(0.6, 0.85)],
                   -1, cv2.LINE_AA, 4)
    yy, xx = np.mgrid[:h, :w]
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6)
    angle = np.arctan2(yy - cy, xx - cx)
    radius = min(h, w) * 0.16 * (1 + 0.12 * np.sin(3 * angle + rng.uniform(0, 6)))
    lesion = np.hypot(xx - cx, yy - cy) < radius
    brown = np.array(rng.uniform([110, 65, 45], [150, 95, 70]), np.float32)
    spots = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 2.0)
    lesion_px = brown[None, None] * (1 + 0.25 * spots[..., None] / spots.std())
    alpha = cv2.GaussianBlur(lesion.astype(np.float32), (0, 0), 1.5)[..., None]
    img = img * (1 - alpha) + lesion_px * alpha
    return np.clip(img, 0, 255).astype(np.uint8), lesion


def jpeg(pixels) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=93)
    return out.getvalue()
