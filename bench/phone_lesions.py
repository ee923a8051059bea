"""Benchmark: `score-lesions` on whole smartphone photos, without masks.

The photos of ../shared/data/phone whose patients are on the model's validation side (the split of
recurrence.data.is_validation: none of these patients' images was trained on). Each photo is scored
three ways: whole, as an undeclared image is; declared clinical, so cut out around the lesion the code finds
(no mask); and, where the shared mask exists, cut out from that mask. Prints the ROC AUC of each, how many
lesions were found, and the share flagged per diagnosis at the sensitivity-first point.

Usage, from the repository root::

    .venv/bin/python -m bench.phone_lesions [--limit N]
"""
import argparse
import csv
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from recurrence.cutout import lesion_cutout
from recurrence.data import is_validation, load_mask, load_rgb
from recurrence.metrics import roc_auc
from recurrence.predict import load_scorer, row_history

SHARED = Path(os.environ.get("SCARWATCH_SHARED", Path(__file__).resolve().parents[2] / "shared"))
PHONE = SHARED / "data" / "phone"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="photos to score (default all)")
    args = parser.parse_args(argv)
    if not (PHONE / "manifest.csv").exists():
        print(f"{PHONE} is not here: nothing to measure")
        return
    with open(PHONE / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if is_validation({"source": "pad", "group": r["patient"]})]
    rows = rows[:args.limit]
    scorer = load_scorer()
    whole, found, masked, hows = [], [], [], []
    for r in tqdm(rows, desc="phone photos", unit="photo"):
        image, history = load_rgb(PHONE / r["image"]), row_history(r)
        whole.append(scorer.score_lesion(image, history=history))
        cut, cut_mask, how = lesion_cutout(image, modality="clinical")
        found.append(scorer.score_lesion(cut, mask=cut_mask, history=history))
        hows.append(how)
        if r["mask"]:
            cut, cut_mask, _ = lesion_cutout(image, mask=load_mask(PHONE / r["mask"]), modality="clinical")
            masked.append(scorer.score_lesion(cut, mask=cut_mask, history=history))
        else:
            masked.append(np.nan)
    y = np.array([int(r["malignant"]) for r in rows])
    labels = np.array([r["label"] for r in rows])
    whole, found, masked = map(np.array, (whole, found, masked))
    has_mask = ~np.isnan(masked)
    print(f"\nscore-lesions on whole phone photos of {len(np.unique([r['patient'] for r in rows]))} validation "
          f"patients ({len(rows)} photos, {int(y.sum())} malignant or pre-malignant; "
          f"lesion found in {hows.count('found')}, none stands out in {hows.count('not_found')})")
    print("| scored as | photos | ROC AUC |\n|---|---|---|")
    print(f"| whole (modality not declared) | {len(y)} | {roc_auc(y, whole):.3f} |")
    print(f"| declared clinical: cut out around the lesion found | {len(y)} | {roc_auc(y, found):.3f} |")
    print(f"| whole, photos with a shared mask | {has_mask.sum()} | {roc_auc(y[has_mask], whole[has_mask]):.3f} |")
    print(f"| found, photos with a shared mask | {has_mask.sum()} | {roc_auc(y[has_mask], found[has_mask]):.3f} |")
    print(f"| cut out from the shared mask | {has_mask.sum()} | {roc_auc(y[has_mask], masked[has_mask]):.3f} |")
    threshold = scorer.lesion_thresholds["sensitivity_first"]
    print(f"\nShare flagged at the sensitivity-first point ({threshold:.3f}):")
    print("| diagnosis | photos | whole | cut out (found) |\n|---|---|---|---|")
    for label in sorted(set(labels)):
        k = labels == label
        print(f"| {label} | {k.sum()} | {(whole[k] >= threshold).mean():.2f} | {(found[k] >= threshold).mean():.2f} |")


if __name__ == "__main__":
    main()
