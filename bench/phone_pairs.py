"""Generated phone follow-up pairs from the real phone photos in shared/data/phone.

Patients are split three ways by a hash of their id, so that no photo serves two purposes:
``design`` (the photos looked at while designing the analysis), ``tune`` (pairs the calibration is
fitted on, ``bench.fit_calibration``) and ``bench`` (pairs ``make bench`` reports). A pair folder has
the layout of shared/bench/dev-pairs (``manifest.csv``, ``truth.jsonl``, ``images/``, ``masks/``).

Usage, from the repository root::

    .venv/bin/python -m bench.phone_pairs OUT_DIR [--pairs 150] [--side bench] [--seed 7]
"""

import argparse
import csv
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from registration.batch import load_rgb
from registration.phone_synth import BACKGROUNDS, PHONE_CONFOUNDERS, make_phone_pair
from registration.site import propose_site
from registration.synth import CONFOUNDERS, make_pair

SHARED = Path(os.environ.get("SCARWATCH_SHARED", Path(__file__).resolve().parents[2] / "shared"))
PHONE = SHARED / "data" / "phone"
SIDES = ("design", "tune", "bench")
RECIPES = ("phone", "bench")
#: The bench README's mix: a change in about 60 % of pairs, half of the rest confounded.
KIND_WEIGHTS = {"none": 0.4, "new_lesion": 0.2, "growth": 0.18, "darkening": 0.22}
CARD_WEIGHTS = {None: 0.5, "moved": 0.25, "baseline": 0.1, "followup": 0.15}


def side_of(patient):
    """``design``, ``tune`` or ``bench``: a fixed third of the patients each."""
    return SIDES[int(hashlib.md5(patient.encode()).hexdigest(), 16) % 3]


def phone_rows(side, root=PHONE):
    """Manifest rows of shared/data/phone whose patient is on `side`."""
    with open(root / "manifest.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if side_of(r["patient"]) == side]


def _lesion(root, row, image):
    if row["mask"]:
        return cv2.imread(str(root / row["mask"]), cv2.IMREAD_GRAYSCALE) > 127, True
    return propose_site(image), False


def _donor(root, row):
    image = load_rgb(root / row["image"])
    mask = cv2.imread(str(root / row["mask"]), cv2.IMREAD_GRAYSCALE) > 127
    return image, mask


def _bench_recipe(image, lesion, kind, rng, donor):
    """The dev pairs' recipe (shared/bench/README.md) applied to a phone photo: its capture
    changes and confounders, black where the follow-up shows more than the baseline."""
    confounder = str(rng.choice(CONFOUNDERS)) if kind == "none" and rng.random() < 0.5 else None
    return make_pair(image, lesion_mask=lesion, kind=kind, confounder=confounder, rng=rng,
                     donor=None if isinstance(donor, str) else donor,
                     rotation=30.0, scale_range=(0.8, 1.25))


def generate(out_dir, n_pairs, *, side="bench", seed=7, root=PHONE, recipe="phone", progress=True):
    """Write `n_pairs` generated phone pairs to `out_dir`; returns the number written.

    `recipe` is ``'phone'`` (:func:`registration.phone_synth.make_phone_pair`: a patient's phone
    capture, with backgrounds, cards and other objects) or ``'bench'`` (the dev pairs' recipe).
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; use one of {RECIPES}.")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = phone_rows(side, root)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    donors = [r for r in rows if r["mask"]]
    kinds, kind_p = zip(*KIND_WEIGHTS.items())
    cards, card_p = zip(*CARD_WEIGHTS.items())
    truth_lines, manifest = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_pairs, desc="phone pairs", unit="pair")
    i = 0
    while len(manifest) < n_pairs and i < 20 * n_pairs:
        row = rows[i % len(rows)]
        i += 1
        image = load_rgb(root / row["image"])
        lesion, exact = _lesion(root, row, image)
        kind = str(rng.choice(kinds, p=kind_p))
        if kind in ("growth", "darkening") and not exact:
            kind = "new_lesion" if rng.random() < 0.5 else "none"
        confounder = (str(rng.choice(PHONE_CONFOUNDERS)) if kind == "none" and rng.random() < 0.5 else None)
        donor = None
        if kind == "new_lesion":
            others = [d for d in donors if d["patient"] != row["patient"]]
            donor = "pink" if rng.random() < 0.3 or not others else _donor(root, others[rng.integers(len(others))])
        background = str(rng.choice(BACKGROUNDS)) if rng.random() < 0.5 else None
        card = cards[rng.choice(len(cards), p=card_p)]
        try:
            if recipe == "bench":
                pair = _bench_recipe(image, lesion, kind, rng, donor)
            else:
                pair = make_phone_pair(image, lesion_mask=lesion, kind=kind, confounder=confounder, rng=rng,
                                       donor=donor, background=background, card=card,
                                       second_object=bool(rng.random() < 0.2))
        except ValueError:
            continue
        pair_id = f"{row['image_id']}_{len(manifest)}"
        base, follow = f"images/{pair_id}_baseline.jpg", f"images/{pair_id}_followup.jpg"
        Image.fromarray(pair.reference_image).save(out_dir / base, quality=95)
        Image.fromarray(pair.moving_image).save(out_dir / follow, quality=95)
        mask_path = None
        if pair.change_mask.any():
            mask_path = f"masks/{pair_id}.png"
            Image.fromarray(pair.change_mask.astype(np.uint8) * 255).save(out_dir / mask_path)
        params = {k: v for k, v in pair.params.items() if k not in ("skin", "moving_skin")}
        truth_lines.append({"pair_id": pair_id, "homography": pair.homography.tolist(),
                            "change": bool(pair.change_mask.any()), "kind": pair.kind,
                            "confounder": pair.confounder, "mask": mask_path, "params": params,
                            "patient": row["patient"]})
        manifest.append({"pair_id": pair_id, "baseline": base, "followup": follow})
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    with open(out_dir / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["pair_id", "baseline", "followup"])
        writer.writeheader()
        writer.writerows(manifest)
    with open(out_dir / "truth.jsonl", "w") as fh:
        fh.writelines(json.dumps(t) + "\n" for t in truth_lines)
    return len(manifest)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--side", choices=SIDES, default="bench")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--recipe", choices=RECIPES, default="phone")
    args = parser.parse_args(argv)
    print(generate(args.out, args.pairs, side=args.side, seed=args.seed, recipe=args.recipe))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
