"""Print a checkpoint's stored validation metrics as Markdown (for MODEL_CARD.md).

    python -m recurrence.report [recurrence/checkpoints/recurrence-v1.pt]
"""
from __future__ import annotations

import sys

from .checkpoint import load_checkpoint


def _f(x, nd=3):
    try:
        return f"{float(x):.{nd}f}"
    except (TypeError, ValueError):
        return str(x)


def markdown(ck: dict) -> str:
    m = ck["metrics"]
    les, ch = m["lesion"], m["change"]
    v = les["validation"]
    out = [f"## Validation results ({ck['version']})", "",
           f"Lesion malignancy, group-split validation ({v['n']} images), calibrated blend:", "",
           "| subset | n | malignant | ROC AUC |", "|---|---|---|---|",
           f"| all | {v['n']} | | {_f(v['auc'])} |"]
    for k, r in v.items():
        if isinstance(r, dict):
            out.append(f"| {k} | {r['n']} | {r['positives']} | {_f(r['auc'])} |")
    out += ["", f"ECE (10 bins) after calibration {_f(les['ece_validation'])}; before "
                f"{_f(les['ece_validation_uncalibrated'])}.", "",
            "Operating points (validation):", "", "| point | threshold | sensitivity | specificity |", "|---|---|---|---|"]
    for k, op in les["operating_points"].items():
        out.append(f"| {k} | {_f(les['thresholds'][k])} | {_f(op['sensitivity'])} | {_f(op['specificity'])} |")
    out += ["", "Per diagnosis at the sensitivity-first point (fraction flagged):", "",
            "| label | n | malignant | flagged |", "|---|---|---|---|"]
    for k, r in les["by_label_at_sensitivity_first"].items():
        out.append(f"| {k} | {r['n']} | {r['malignant']} | {_f(r['flagged'], 2)} |")
    out += ["", "Ablations (validation ROC AUC):", "", "| variant | AUC |", "|---|---|"]
    for k, r in les["ablations_auc"].items():
        if isinstance(r, dict):
            out.append(f"| {k} | " + ", ".join(f"{a} {_f(b)}" for a, b in r.items()) + " |")
        else:
            out.append(f"| {k} | {_f(r)} |")
    tr = les["train"]
    out += ["", f"CNN training: {tr['steps']} steps, {tr['epochs']} epochs planned (auto={tr['epochs_auto']}), "
                f"stopped early: {tr['stopped_early']}; CNN wall time {_f(les['cnn_minutes'], 1)} min; "
                f"whole command {_f(ck.get('wall_minutes'), 1)} min.", "",
            f"Recurrence head on synthetic validation pairs ({ch['validation_pairs']} pairs, lesions from "
            f"validation groups): ROC AUC {_f(ch['auc_synthetic_validation'])}, ECE {_f(ch['ece_synthetic_validation'])}.",
            "", "| point | threshold | sensitivity | specificity |", "|---|---|---|---|"]
    for k, op in ch["operating_points"].items():
        out.append(f"| {k} | {_f(ck['thresholds'][k])} | {_f(op['sensitivity'])} | {_f(op['specificity'])} |")
    out += ["", "| scenario | n | positives | flagged (sensitivity-first) |", "|---|---|---|---|"]
    for k, r in ch["per_scenario"].items():
        out.append(f"| {k} | {r['n']} | {r['positives']} | {_f(r['flagged_at_sensitivity_first'], 2)} |")
    out += ["", "Change-head ablations (synthetic validation ROC AUC):", "", "| inputs | AUC |", "|---|---|"]
    for k, r in ch["ablations_auc"].items():
        out.append(f"| {k} | {_f(r)} |")
    if "same_lesion_recaptures_flagged" in ch:
        s = ch["same_lesion_recaptures_flagged"]
        out += ["", f"Real re-captures of unchanged lesions (HAM10000 same-lesion pairs, validation groups, n={s['n']}), "
                    f"whole image as the region: flagged {_f(s['sensitivity_first'], 2)} at sensitivity-first, "
                    f"{_f(s['specificity_first'], 2)} at specificity-first."]
    return "\n".join(out) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from .predict import default_checkpoint
    path = argv[0] if argv else default_checkpoint()
    print(markdown(load_checkpoint(path)))


if __name__ == "__main__":
    main()
