"""Reading the shared lesion folder: manifest, group split, image cache, data hash.

Nothing here writes into the shared folder; images stay where they are.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .encoding import PATIENT_KEYS, encode_answers, encode_patient

REPO = Path(__file__).resolve().parent.parent
HISTORY_COLUMNS = ("itch", "grew", "hurt", "changed", "bleed", "elevation")
VAL_PERCENT = 20
#: Diagnosis groups of the auxiliary training target: the sources' labels for one diagnosis share a group.
DIAGNOSIS_GROUPS = {
    "melanoma": ("MEL", "melanoma"), "basal_cell_carcinoma": ("BCC",), "squamous_cell_carcinoma": ("SCC",),
    "actinic_keratosis": ("AK", "ACK"), "nevus": ("NV", "NEV", "common_nevus"), "atypical_nevus": ("atypical_nevus",),
    "keratosis": ("BKL", "SEK"), "dermatofibroma": ("DF",), "vascular": ("VASC",),
}
_DIAGNOSIS_INDEX = {label: i for i, labels in enumerate(DIAGNOSIS_GROUPS.values()) for label in labels}


def default_data_dir() -> Path:
    shared = os.environ.get("SCARWATCH_SHARED") or str(REPO.parent / "shared")
    return Path(shared) / "data" / "lesions"


def read_manifest(data_dir: Path) -> list[dict]:
    with open(Path(data_dir) / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def is_validation(row: dict) -> bool:
    """Stable group split: a group is in validation iff sha1(source/group) % 100 < VAL_PERCENT.

    Independent of the seed, so every run and every ablation uses the same validation set,
    and all images of one lesion/patient stay on one side.
    """
    h = hashlib.sha1(f"{row['source']}/{row['group']}".encode()).hexdigest()
    return int(h, 16) % 100 < VAL_PERCENT


def data_hash(data_dir: Path, rows: list[dict]) -> str:
    """sha256 over the manifest bytes and the sorted list of (path, size) it names."""
    data_dir = Path(data_dir)
    h = hashlib.sha256((data_dir / "manifest.csv").read_bytes())
    files = sorted({r["image"] for r in rows} | {r["mask"] for r in rows if r.get("mask")})
    for f in files:
        p = data_dir / f
        h.update(f"{f}\t{p.stat().st_size if p.exists() else -1}\n".encode())
    return h.hexdigest()


def diagnosis_indices(rows: list[dict]) -> np.ndarray:
    """(N,) int64 index into DIAGNOSIS_GROUPS of each row's label; -1 for a label outside the groups."""
    return np.array([_DIAGNOSIS_INDEX.get(r.get("label", ""), -1) for r in rows], np.int64)


def history_of(row: dict) -> np.ndarray:
    return encode_answers({k: row.get(k) for k in HISTORY_COLUMNS})


def patient_of(row: dict) -> np.ndarray:
    return encode_patient({k: row.get(k) for k in PATIENT_KEYS})


def load_rgb(path, *, draft: int | None = None) -> np.ndarray:
    """RGB uint8; ``draft``: let the JPEG decoder skip detail it does not need for images >= draft px."""
    with Image.open(path) as im:
        if draft:
            im.draft("RGB", (draft, draft))
        return np.asarray(im.convert("RGB"))


def load_mask(path) -> np.ndarray | None:
    if not path:
        return None
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def resize_rgb(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR, reducing_gap=2.0))


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


@dataclass
class LesionSet:
    rows: list[dict]
    images: np.ndarray            # (N, C, C, 3) uint8, whole image squashed to a square
    images_jpeg: np.ndarray       # same, after a random-quality JPEG round trip
    masks: np.ndarray             # (N, C, C) bool (given or estimated)
    features: np.ndarray          # (N, F) float32 hand-made features, given mask where there is one
    features_est: np.ndarray      # (N, F) features with an estimated mask
    history: np.ndarray           # (N, 12) float32 answers
    patient: np.ndarray           # (N, 9) float32 age, sex, body site
    labels: np.ndarray            # (N,) float32 malignant
    val: np.ndarray = field(default=None)  # (N,) bool


def load_lesion_set(data_dir: Path, *, cache_size: int, seed: int = 0, limit: int | None = None,
                    progress: bool = True) -> LesionSet:
    from .features import estimate_mask, lesion_features, SIZE as FSIZE
    import cv2

    data_dir = Path(data_dir)
    rows = read_manifest(data_dir)
    if limit:
        rows = rows[:limit]
    rng = np.random.default_rng(seed)
    n = len(rows)
    imgs = np.zeros((n, cache_size, cache_size, 3), np.uint8)
    jpgs = np.zeros_like(imgs)
    masks = np.zeros((n, cache_size, cache_size), bool)
    feats, feats_est = [], []
    it = rows
    if progress:
        from tqdm import tqdm
        it = tqdm(rows, desc="loading images", unit="img")
    for i, r in enumerate(it):
        img = load_rgb(data_dir / r["image"], draft=2 * cache_size)  # features work at 128 px anyway
        mask = load_mask(data_dir / r["mask"]) if r.get("mask") else None
        imgs[i] = resize_rgb(img, cache_size)
        jpgs[i] = jpeg_roundtrip(imgs[i], rng.integers(35, 91))
        f_est = lesion_features(img, None)
        feats_est.append(f_est)
        feats.append(lesion_features(img, mask) if mask is not None else f_est)
        if mask is None:
            small = cv2.resize(img, (FSIZE, FSIZE), interpolation=cv2.INTER_AREA)
            mask_small = estimate_mask(small)
            mask = mask_small
        masks[i] = cv2.resize(mask.astype(np.uint8), (cache_size, cache_size), interpolation=cv2.INTER_NEAREST) > 0
    return LesionSet(
        rows=rows, images=imgs, images_jpeg=jpgs, masks=masks,
        features=np.stack(feats), features_est=np.stack(feats_est),
        history=np.stack([history_of(r) for r in rows]),
        patient=np.stack([patient_of(r) for r in rows]),
        labels=np.array([float(r["malignant"]) for r in rows], np.float32),
        val=np.array([is_validation(r) for r in rows]),
    )
