"""Helpers for the recurrence tests (generated images, paths); imported by conftest and tests."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def shared_lesions_dir() -> Path:
    shared = os.environ.get("SCARWATCH_SHARED") or str(REPO.parent / "shared")
    return Path(shared) / "data" / "lesions"


def make_lesion_image(rng, size=64, malignant=False, cutout=False):
    """Skin-coloured square with a blob: benign = round, even brown; malignant = irregular, dark, multicolour."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    img = np.empty((size, size, 3), np.float32)
    img[:] = np.array([215, 170, 145]) * rng.uniform(0.8, 1.05)
    cx, cy = size / 2 + rng.normal(0, 2, 2)
    r = size * rng.uniform(0.18, 0.3)
    ang = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + (0.35 * np.sin(3 * ang + rng.uniform(0, 6)) if malignant else 0.05 * np.sin(2 * ang))
    m = np.hypot(xx - cx, yy - cy) < r * wobble
    col = np.array([60, 35, 30]) if malignant else np.array([150, 100, 70])
    img[m] = col
    if malignant:
        img[m & (xx > cx)] = np.array([90, 90, 130])
    img += rng.normal(0, 4, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if cutout:
        img[~m] = 0
    return img, m


SMOKE_ARGS = ["--epochs", "2", "--batch-size", "8", "--image-size", "32", "--cache-size", "40", "--width", "8",
              "--tta", "2", "--change-pairs", "64", "--change-epochs", "2", "--no-progress", "--minutes", "2"]


