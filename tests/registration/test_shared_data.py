"""A few real benchmark pairs (skipped when the shared data folder is absent)."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from followup.batch import load_rgb
from registration import analyze_pair

ROOT = Path(os.environ.get("SCARWATCH_SHARED", Path(__file__).resolve().parents[3] / "shared"))
DEV = ROOT / "bench" / "dev-pairs"
pytestmark = pytest.mark.skipif(not (DEV / "truth.jsonl").exists(),
                                reason="shared benchmark data not found (set SCARWATCH_SHARED)")


def _cases(n_per_kind=1):
    if not (DEV / "truth.jsonl").exists():
        return []
    truth = [json.loads(line) for line in open(DEV / "truth.jsonl")]
    with open(DEV / "manifest.csv") as fh:
        files = {row["pair_id"]: row for row in csv.DictReader(fh)}
    picked = []
    for kind in ("none", "new_lesion", "darkening"):
        picked += [t for t in truth if t["kind"] == kind and not t["confounder"]][:n_per_kind]
    return [(t, files[t["pair_id"]]) for t in picked]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0]["pair_id"])
def test_dev_pair_registers_and_scores(case):
    truth, files = case
    reference = load_rgb(DEV / files["baseline"])
    moving = load_rgb(DEV / files["followup"])
    analysis = analyze_pair(reference, moving)
    assert analysis.registered
    h, w = moving.shape[:2]
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 7), np.linspace(0, h - 1, 5))
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(35)])
    expected = np.array(truth["homography"]) @ points
    got = analysis.homography @ points
    error = np.linalg.norm(got[:2] / got[2] - expected[:2] / expected[2], axis=0)
    assert np.median(error) <= 3.0
    assert analysis.flag == truth["change"]
