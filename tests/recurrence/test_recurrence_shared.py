"""The committed checkpoint on a handful of real shared images (skipped without ../shared)."""
import csv
import json
import time

import numpy as np
import pytest

from recurrence.data import diagnosis_indices, is_validation
from recurrence.predict import default_checkpoint, load_scorer, score_manifest
from tests.recurrence.recurrence_helpers import shared_lesions_dir

DATA = shared_lesions_dir()
pytestmark = pytest.mark.skipif(not (DATA / "manifest.csv").exists(), reason=f"no shared data at {DATA}")


def _validation_rows(n_per_class=6):
    rows = [r for r in csv.DictReader(open(DATA / "manifest.csv")) if is_validation(r)]
    out = []
    for src in ("isic", "pad", "ph2"):
        for mal in ("0", "1"):
            out += [r for r in rows if r["source"] == src and r["malignant"] == mal][:n_per_class]
    return out


def test_committed_checkpoint_scores_real_images(tmp_path):
    try:
        default_checkpoint()
    except FileNotFoundError:
        pytest.fail("no committed checkpoint in recurrence/checkpoints")
    rows = _validation_rows()
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "image": str(DATA / r["image"]), "mask": str(DATA / r["mask"]) if r["mask"] else ""})
    out = tmp_path / "out.jsonl"
    t = time.time()
    score_manifest(manifest, out)
    per_image = (time.time() - t) / len(rows)
    recs = {r["image_id"]: r["malignancy_score"] for r in map(json.loads, out.read_text().splitlines())}
    y = np.array([int(r["malignant"]) for r in rows])
    s = np.array([recs[r["image_id"]] for r in rows])
    assert ((s >= 0) & (s <= 1)).all()
    # validation images (never trained on): malignant ones score higher on average
    assert s[y == 1].mean() > s[y == 0].mean()
    assert per_image < 1.0
    assert load_scorer().version


def test_every_shared_label_has_a_diagnosis_group():
    rows = list(csv.DictReader(open(DATA / "manifest.csv")))
    assert (diagnosis_indices(rows) >= 0).all()
