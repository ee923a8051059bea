"""Refit the change-score calibration (registration/calibration.py).

Pairs come from :func:`registration.synth.make_pair` applied to ISIC images
(180x180, resized to 600x450) and PAD-UFES-20 clinical cut-outs, never PH2
(the dev pairs are PH2, and so is the held-out set); ISIC images used by the
real re-capture benchmark are left out. New lesions are pasted from other
PAD cut-outs. The capture changes mix the benchmark's ranges with the wider
ones the product must survive. A logistic regression (Newton's method, small
L2 penalty) maps the two change features to a probability.

Usage (from the repository root)::

    .venv/bin/python -m bench.fit_calibration --pairs 240 [--write]
"""

import argparse
import csv
import json
import re
import time
from pathlib import Path

import cv2
import numpy as np

from registration import analyze_pair, make_pair
from registration.batch import load_rgb
from registration.synth import CONFOUNDERS

REPO = Path(__file__).resolve().parents[1]
LESIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "lesions"
CALIBRATION = REPO / "registration" / "calibration.py"
# Mix of the benchmark's kinds: change in about 60 % of pairs, half of the rest confounded.
KIND_WEIGHTS = {"none": 0.4, "new_lesion": 0.2, "growth": 0.18, "darkening": 0.22}


def _sources(root, seed):
    with open(root / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(root / "same_lesion_pairs.csv", newline="") as fh:
        recaptures = {p for row in csv.DictReader(fh) for p in (row["a"], row["b"])}
    rng = np.random.default_rng(seed)
    isic = [r for r in rows if r["source"] == "isic" and r["image"] not in recaptures]
    pad = [r for r in rows if r["source"] == "pad" and r["mask"]]
    rng.shuffle(isic)
    rng.shuffle(pad)
    return isic, pad


def _load(root, row):
    image = load_rgb(root / row["image"])
    if row["source"] == "isic":
        # Undo the previous uploader's squash to a square; a usual dermoscopy size.
        image = cv2.resize(image, (600, 450), interpolation=cv2.INTER_CUBIC)
    mask = None
    if row["mask"]:
        mask = cv2.imread(str(root / row["mask"]), cv2.IMREAD_GRAYSCALE) > 127
    return image, mask


def generate_features(n_pairs, *, seed=2024, root=LESIONS, progress=True):
    """Analyse `n_pairs` generated pairs; rows of (features, change, kind, confounder)."""
    isic, pad = _sources(root, seed)
    rng = np.random.default_rng(seed)
    kinds, weights = zip(*KIND_WEIGHTS.items())
    out = []
    i = 0
    while len(out) < n_pairs:
        row = isic[i % len(isic)] if i % 3 else pad[i % len(pad)]
        donor_row = pad[(i * 7 + 1) % len(pad)]
        i += 1
        image, mask = _load(root, row)
        if min(image.shape[:2]) < 200:
            continue
        kind = str(rng.choice(kinds, p=weights))
        confounder = str(rng.choice(CONFOUNDERS)) if kind == "none" and rng.random() < 0.5 else None
        wide = rng.random() < 0.5
        try:
            pair = make_pair(image, lesion_mask=mask, kind=kind, confounder=confounder, rng=rng,
                             donor=_load(root, donor_row),
                             rotation=45.0 if wide else 30.0,
                             scale_range=(0.6, 1.6) if wide else (0.8, 1.25))
        except ValueError:
            continue
        analysis = analyze_pair(pair.reference_image, pair.moving_image)
        if not analysis.registered:
            continue
        visible = (pair.change_mask & analysis.valid_mask).sum() >= 20
        change = kind != "none" and visible
        if kind != "none" and not visible:
            continue
        out.append({"features": analysis.change_features.tolist(), "change": bool(change),
                    "kind": kind, "confounder": confounder, "image": row["image_id"]})
        if progress and len(out) % 20 == 0:
            print(f"{len(out)}/{n_pairs} pairs", flush=True)
    return out


def fit_logistic(x, y, *, l2=1e-2, iterations=50):
    """Logistic regression by Newton's method; returns (intercept, coef)."""
    design = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(design.shape[1])
    penalty = l2 * np.eye(len(w))
    penalty[0, 0] = 0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-design @ w))
        grad = design.T @ (p - y) + penalty @ w
        hess = design.T @ (design * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), w[1:].tolist()


def _auc(scores, labels):
    scores, labels = np.asarray(scores), np.asarray(labels, bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def write_calibration(intercept, coef, n_pairs, seed):
    text = CALIBRATION.read_text()
    block = ("CHANGE_SCORE_COEFFICIENTS = {\n"
             f"    \"intercept\": {intercept:.6f},\n"
             f"    \"coef\": [{', '.join(f'{c:.6f}' for c in coef)}],\n"
             f"    \"fitted_on\": \"{n_pairs} synthetic ISIC/PAD pairs, seed {seed}\",\n"
             "}\n")
    text = re.sub(r"CHANGE_SCORE_COEFFICIENTS = \{.*?\n\}\n", block, text, flags=re.S)
    CALIBRATION.write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Refit the change-score calibration.")
    parser.add_argument("--pairs", type=int, default=240)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--cache", default="/tmp/scarwatch-calibration.json",
                        help="features of generated pairs (reused when present)")
    parser.add_argument("--write", action="store_true", help="update registration/calibration.py")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    cache = Path(args.cache)
    if cache.exists():
        rows = json.loads(cache.read_text())
    else:
        start = time.perf_counter()
        rows = generate_features(args.pairs, seed=args.seed)
        cache.write_text(json.dumps(rows))
        print(f"generated {len(rows)} pairs in {time.perf_counter() - start:.0f} s")
    x = np.array([r["features"] for r in rows])
    y = np.array([r["change"] for r in rows], float)
    # Fit on two thirds, report on the rest, then refit on all for the constant.
    order = np.random.default_rng(args.seed).permutation(len(rows))
    train, test = order[: 2 * len(rows) // 3], order[2 * len(rows) // 3:]
    intercept, coef = fit_logistic(x[train], y[train])
    p_test = 1 / (1 + np.exp(-(intercept + x[test] @ np.array(coef))))
    print(f"held-out AUC {_auc(p_test, y[test]):.3f} on {len(test)} pairs")
    for threshold in (0.1, 0.2, 0.3, 0.35, 0.4, 0.5):
        flag = p_test >= threshold
        sens = flag[y[test] == 1].mean()
        spec = (~flag[y[test] == 0]).mean()
        print(f"  threshold {threshold:.2f}: sensitivity {sens:.3f} specificity {spec:.3f}")
    intercept, coef = fit_logistic(x, y)
    print(f"all {len(rows)} pairs: intercept {intercept:.4f} coef {coef}")
    if args.write:
        write_calibration(intercept, coef, len(rows), args.seed)
        print(f"wrote {CALIBRATION}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
