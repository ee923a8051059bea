"""Benchmark: our pipeline (through registration.batch.run_batch) beside plain OpenCV peers.

Dermoscopy: every measure of shared/bench/README.md on the dev pairs and the false alarm rate on
the real dermoscopy re-captures (shared/data/lesions/same_lesion_pairs.csv). Phone: the same
measures on phone pairs generated from the ``bench`` third of shared/data/phone's patients
(bench/phone_pairs.py), and false alarms and refusals on the real phone re-captures
(shared/data/phone/same_lesion_pairs.csv). Then seconds and peak memory per pair (one thread,
a fresh process) for dev pairs, 1-megapixel phone pairs and 12-megapixel versions.

Usage, from the repository root::

    .venv/bin/python -m bench.run [--limit N] [--phone-pairs N] [--recaptures N] [--timed N] [--big N] [--out DIR]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench import phone_pairs
from bench.peers import peer_analyze
from registration.batch import load_rgb, run_batch

SHARED = Path(os.environ.get("SCARWATCH_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DEV = SHARED / "bench" / "dev-pairs"
LESIONS = SHARED / "data" / "lesions"
PHONE = SHARED / "data" / "phone"
PEERS = ("sift", "orb")


def _grid_error(homography, truth, moving_shape, reference_shape):
    """Median distance on the 7x5 follow-up grid points that land inside the baseline."""
    h, w = moving_shape[:2]
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 7), np.linspace(0, h - 1, 5))
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(35)])
    t = truth @ points
    t = t[:2] / t[2]
    rh, rw = reference_shape[:2]
    inside = (t[0] >= 0) & (t[0] <= rw - 1) & (t[1] >= 0) & (t[1] <= rh - 1)
    if homography is None or not inside.any():
        return float("inf")
    p = np.asarray(homography) @ points
    p = p[:2] / p[2]
    return float(np.median(np.linalg.norm(p - t, axis=0)[inside]))


def _auc(scores, labels):
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def _sens_at_spec(scores, labels, specificity=0.9):
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    neg = np.sort(scores[~labels])
    if len(neg) == 0 or labels.sum() == 0:
        return float("nan")
    threshold = neg[int(np.ceil(specificity * len(neg))) - 1]
    return float((scores[labels] > threshold).mean())


def _score(results, truth):
    """All README measures for one method; results and truth keyed by pair_id.

    A change less than half inside what the follow-up shows cannot be seen: such pairs count
    for registration only (``hidden change pairs``), as in shared/bench/README.md.
    """
    all_ids = [t["pair_id"] for t in truth]
    errors = np.array([results[i]["grid_error"] for i in all_ids])
    hidden = {t["pair_id"] for t in truth if t["change"]
              and (results[t["pair_id"]]["truth_mask"] & results[t["pair_id"]]["shown"]).sum()
              < 0.5 * results[t["pair_id"]]["truth_mask"].sum()}
    truth = [t for t in truth if t["pair_id"] not in hidden]
    ids = [t["pair_id"] for t in truth]
    change = np.array([t["change"] for t in truth])
    scores = np.array([results[i]["change_score"] for i in ids])
    flags = np.array([results[i]["flag"] for i in ids])
    confounded = np.array([bool(t["confounder"]) for t in truth])
    dice, hits = [], []
    for t in truth:
        if not t["change"]:
            continue
        r = results[t["pair_id"]]
        truth_mask = r["truth_mask"] & r["shown"]
        pred = r["change_mask"] & r["shown"]
        if truth_mask.sum() == 0:
            continue
        inter = (pred & truth_mask).sum()
        dice.append(2 * inter / (pred.sum() + truth_mask.sum()))
        hits.append(inter / truth_mask.sum() >= 0.3)
    return {
        "registration success": float((errors <= 3).mean()),
        "median grid error px": float(np.median(errors)),
        "wrong alignment reported": float(np.mean([
            results[i]["homography"] is not None and results[i]["grid_error"] > 10 for i in all_ids])),
        "hidden change pairs": float(len(hidden)),
        "change ROC AUC": _auc(scores, change),
        "sensitivity @90% spec": _sens_at_spec(scores, change),
        "flag sensitivity": float(flags[change].mean()),
        "flag specificity": float((~flags[~change]).mean()),
        "confounders flagged": float(flags[confounded].mean()) if confounded.any() else float("nan"),
        "hit rate (>=30% covered)": float(np.mean(hits)) if hits else float("nan"),
        "mean Dice": float(np.mean(dice)) if dice else float("nan"),
        "median s/pair": float(np.median([results[i]["seconds"] for i in all_ids])),
    }


def _truth_masks(folder, t, baseline_shape, followup_shape):
    h, w = baseline_shape[:2]
    if t["mask"]:
        truth_mask = cv2.imread(str(folder / t["mask"]), cv2.IMREAD_GRAYSCALE) > 127
    else:
        truth_mask = np.zeros((h, w), bool)
    shown = cv2.warpPerspective(np.full(followup_shape[:2], 255, np.uint8),
                                np.array(t["homography"]), (w, h), flags=cv2.INTER_NEAREST) > 0
    return truth_mask, shown


def run_pairs(folder, limit, out_dir, progress, name="dev"):
    """Ours (run_batch) and the peers on a folder of pairs with truth; returns {method: measures}."""
    truth = [json.loads(line) for line in open(folder / "truth.jsonl")][:limit]
    with open(folder / "manifest.csv", newline="") as fh:
        files = {row["pair_id"]: row for row in csv.DictReader(fh)}
    manifest = out_dir / f"{name}_manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["pair_id", "baseline", "followup"])
        writer.writeheader()
        for t in truth:
            row = files[t["pair_id"]]
            writer.writerow({"pair_id": t["pair_id"], "baseline": str(folder / row["baseline"]),
                             "followup": str(folder / row["followup"])})
    run_batch(manifest, out_dir / f"{name}_results.jsonl", progress=progress)
    ours = {json.loads(line)["pair_id"]: json.loads(line)
            for line in open(out_dir / f"{name}_results.jsonl")}
    methods = {"ours": {}, **{p: {} for p in PEERS}}
    for t in truth:
        pid = t["pair_id"]
        reference = load_rgb(folder / files[pid]["baseline"])
        moving = load_rgb(folder / files[pid]["followup"])
        truth_mask, shown = _truth_masks(folder, t, reference.shape, moving.shape)
        line = ours[pid]
        if "error" in line:
            entry = {"homography": None, "change_score": 0.0, "flag": False, "seconds": 0.0,
                     "change_mask": np.zeros(reference.shape[:2], bool)}
        else:
            mask = cv2.imread(str(out_dir / line["change_mask"]), cv2.IMREAD_GRAYSCALE) > 127
            entry = {"homography": line["homography"], "change_score": line["change_score"],
                     "flag": line["flag"], "seconds": line["seconds"], "change_mask": mask}
        methods["ours"][pid] = entry
        for peer in PEERS:
            start = time.perf_counter()
            result = peer_analyze(reference, moving, method=peer)
            result["seconds"] = time.perf_counter() - start
            methods[peer][pid] = result
        for entry in (methods[m][pid] for m in methods):
            entry["grid_error"] = _grid_error(entry["homography"], np.array(t["homography"]),
                                              moving.shape, reference.shape)
            entry["truth_mask"], entry["shown"] = truth_mask, shown
    return {m: _score(r, truth) for m, r in methods.items()}


def run_recaptures(root, limit, out_dir, progress, name="recapture"):
    """Share of real re-captures of unchanged lesions (`root`/same_lesion_pairs.csv) that each method flags."""
    with open(root / "same_lesion_pairs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:limit]
    if not rows:
        return {}
    lesion_key = "lesion_id" if "lesion_id" in rows[0] else "lesion"
    manifest = out_dir / f"{name}_manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["pair_id", "baseline", "followup"])
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow({"pair_id": f"{row[lesion_key]}_{i}", "baseline": str(root / row["a"]),
                             "followup": str(root / row["b"])})
    run_batch(manifest, out_dir / f"{name}_results.jsonl", progress=progress)
    lines = [json.loads(x) for x in open(out_dir / f"{name}_results.jsonl")]
    summary = {"ours": {
        "real re-captures flagged": float(np.mean([bool(x.get("flag")) for x in lines])),
        "real re-captures refused": float(np.mean(
            ["error" in x or not x["quality"]["usable"] or not x["registered"] for x in lines])),
    }}
    for peer in PEERS:
        results = [peer_analyze(load_rgb(root / r["a"]), load_rgb(root / r["b"]), method=peer) for r in rows]
        summary[peer] = {"real re-captures flagged": float(np.mean([r["flag"] for r in results])),
                         "real re-captures refused": float(np.mean([not r["registered"] for r in results]))}
    return summary


_MEASURE_CHILD = r"""
import json, resource, sys, time
import cv2
cv2.setNumThreads(1)
from registration.batch import load_rgb
from registration import analyze_pair
seconds, cpu = [], []
for ref_path, mov_path in json.loads(sys.argv[1]):
    start, start_cpu = time.perf_counter(), time.process_time()
    analyze_pair(load_rgb(ref_path), load_rgb(mov_path))
    seconds.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
print(json.dumps({"seconds": seconds, "cpu": cpu,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _measure(pairs):
    """Seconds per pair and peak resident memory, in a fresh one-thread subprocess."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _MEASURE_CHILD, json.dumps(pairs)], cwd=repo,
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _one_megapixel(pairs, out_dir):
    """Copies of phone pairs at one megapixel (the aspect kept)."""
    out = []
    for i, (ref, mov) in enumerate(pairs):
        paths = []
        for name, src in (("b", ref), ("f", mov)):
            image = cv2.imread(src)
            f = np.sqrt(1e6 / (image.shape[0] * image.shape[1]))
            image = cv2.resize(image, (round(image.shape[1] * f), round(image.shape[0] * f)),
                               interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
            path = out_dir / f"phone1mp_{i}_{name}.jpg"
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            paths.append(str(path))
        out.append(tuple(paths))
    return out


def run_resources(n_timed, n_big, out_dir, phone_folder=None):
    """Time (image decoding included) and memory on dev pairs, 1-MP phone pairs and at 12 MP.

    The median over `n_timed` pairs keeps the first call's one-off start-up
    (lazy imports, detector creation) from standing for a typical pair.
    """
    with open(DEV / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    small = [(str(DEV / r["baseline"]), str(DEV / r["followup"])) for r in rows[:n_timed]]
    big = []
    for i, (ref, mov) in enumerate(small[:n_big]):
        paths = []
        for name, src in (("b", ref), ("f", mov)):
            image = cv2.imread(src)
            image = cv2.resize(image, (4000, 3000), interpolation=cv2.INTER_CUBIC)
            path = out_dir / f"big_{i}_{name}.jpg"
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            paths.append(str(path))
        big.append(tuple(paths))
    sets = [("dev pair", small)]
    if phone_folder is not None and (phone_folder / "manifest.csv").exists():
        with open(phone_folder / "manifest.csv", newline="") as fh:
            phone = [(str(phone_folder / r["baseline"]), str(phone_folder / r["followup"]))
                     for r in csv.DictReader(fh)][:n_timed]
        sets.append(("1-MP phone", _one_megapixel(phone, out_dir)))
    sets.append(("12-MP pair", big))
    result = {}
    for label, pairs in sets:
        if not pairs:
            continue
        measured = _measure(pairs)
        result[label] = {"median s": float(np.median(measured["seconds"])),
                         "median cpu s": float(np.median(measured["cpu"])),
                         "peak MB": measured["peak_mb"]}
    return result


def _table(rows, methods):
    names = sorted({k for m in methods for k in rows.get(m, {})}, key=lambda k: list(
        next(r for r in rows.values() if k in r)).index(k))
    width = max(len(n) for n in names) + 2
    lines = [" " * width + "".join(f"{m:>10}" for m in methods)]
    for name in names:
        cells = []
        for m in methods:
            value = rows.get(m, {}).get(name)
            cells.append(f"{value:>10.3f}" if isinstance(value, float) else f"{'-':>10}")
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Scar Watch image-analysis benchmark.")
    parser.add_argument("--limit", type=int, default=None, help="dev pairs to use (default all)")
    parser.add_argument("--phone-pairs", type=int, default=150,
                        help="phone pairs to generate from the bench third of shared/data/phone (0: none)")
    parser.add_argument("--phone-seed", type=int, default=7)
    parser.add_argument("--recaptures", type=int, default=None,
                        help="real re-capture pairs to use (default all)")
    parser.add_argument("--timed", type=int, default=30, help="dev pairs to time one by one")
    parser.add_argument("--big", type=int, default=3, help="pairs to time at 12 megapixels")
    parser.add_argument("--out", default=None, help="folder for results (default: a temp folder)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not (DEV / "truth.jsonl").exists():
        print(f"benchmark data not found under {SHARED}; set SCARWATCH_SHARED", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="scarwatch-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    start = time.perf_counter()
    rows = run_pairs(DEV, args.limit, out_dir, progress)
    for method, values in run_recaptures(LESIONS, args.recaptures, out_dir, progress).items():
        rows[method].update(values)
    measures = {"dermoscopy": rows}
    phone_folder = None
    if args.phone_pairs and (PHONE / "manifest.csv").exists():
        phone_folder = out_dir / "phone-pairs"
        if not (phone_folder / "truth.jsonl").exists():
            phone_pairs.generate(phone_folder, args.phone_pairs, side="bench", seed=args.phone_seed,
                                 root=PHONE, progress=progress)
        phone = run_pairs(phone_folder, None, out_dir, progress, name="phone")
        for method, values in run_recaptures(PHONE, args.recaptures, out_dir, progress,
                                             name="phone_recapture").items():
            phone[method].update(values)
        measures["phone"] = phone
    methods = ["ours", *PEERS]
    print(f"\nDermoscopy: dev pairs {DEV}, re-captures {LESIONS / 'same_lesion_pairs.csv'}\n")
    print(_table(rows, methods))
    if "phone" in measures:
        print(f"\nPhone: {args.phone_pairs} pairs generated from {PHONE} (bench patients, seed {args.phone_seed}), "
              f"re-captures {PHONE / 'same_lesion_pairs.csv'}\n")
        print(_table(measures["phone"], methods))
    resources = run_resources(args.timed, args.big, out_dir, phone_folder)
    print("\nResources (ours, one thread, fresh process):")
    for label, values in resources.items():
        print(f"  {label:<12} median {values['median s']:.3f} s/pair wall "
              f"({values['median cpu s']:.3f} s CPU), peak {values['peak MB']:.0f} MB")
    print(f"\nresults in {out_dir}; benchmark took {time.perf_counter() - start:.0f} s")
    (out_dir / "summary.json").write_text(json.dumps({"measures": measures, "resources": resources},
                                                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
