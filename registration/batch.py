"""Batch analysis of follow-up photo pairs (the contract's ``analyze-batch``).

Pure: no Flask, no database. The web app's CLI command calls :func:`run_batch`.
"""

import argparse
import csv
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from registration import analyze_pair
from registration.measure import reasons_in_mm, region_mm
from registration.sticker_detect import detect_sticker, pair_scale

try:  # HEIC photos from iPhones, when the plugin is installed (requirements.txt).
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - optional plugin
    pass

_MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg")


def load_rgb(path):
    """Read a photo as RGB uint8, applying the camera's EXIF orientation.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    image : ndarray, shape (M, N, 3), uint8
    """
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}; send a JPEG, PNG or HEIC photo.") from exc


def _find_mask(lesion_masks_dir, baseline_path):
    if lesion_masks_dir is None:
        return None
    for suffix in _MASK_SUFFIXES:
        candidate = Path(lesion_masks_dir) / (Path(baseline_path).stem + suffix)
        if candidate.exists():
            with Image.open(candidate) as img:
                return np.asarray(img.convert("L")) > 127
    return None


def _safe_name(pair_id):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", pair_id) or "pair"


def _finite(value):
    return float(value) if math.isfinite(value) else None


def _record(pair_id, analysis, recurrence, recurrence_note, mask_rel, seconds, scale=None):
    scale = scale or {"moving_mm_per_px": None, "reference_mm_per_px": None, "source": None, "reasons": []}
    reasons = reasons_in_mm(analysis.reasons, analysis.regions, scale["reference_mm_per_px"])
    if recurrence_note:
        reasons.append(recurrence_note)
    return {
        "pair_id": pair_id,
        "registered": bool(analysis.registered),
        "homography": None if analysis.homography is None else analysis.homography.tolist(),
        "change_score": round(float(analysis.change_score), 6),
        "change_mask": mask_rel,
        "recurrence_score": round(float(recurrence), 6),
        "flag": bool(analysis.flag),
        "site_flag": bool(analysis.site_flag),
        "modality": analysis.modality,
        "quality": {"usable": bool(analysis.quality.usable), "reasons": list(analysis.quality.reasons)},
        "reasons": reasons,
        "regions": [dict(r, distance_to_lesion_px=_finite(r["distance_to_lesion_px"]),
                         **region_mm(r, scale["reference_mm_per_px"]))
                    for r in analysis.regions],
        "scale_mm_per_px": (None if scale["moving_mm_per_px"] is None
                            else round(float(scale["moving_mm_per_px"]), 6)),
        "scale_source": scale["source"],
        "scale_reasons": list(scale["reasons"]),
        "seconds": round(seconds, 4),
    }


def run_batch(manifest_path, out_path, *, change_masks_dir=None, lesion_masks_dir=None, recurrence_scorer=None,
              progress=True):
    """Analyse every pair of a manifest and write one JSON line per pair.

    Parameters
    ----------
    manifest_path : str or Path
        CSV with columns ``pair_id, baseline, followup`` (paths relative to the
        manifest's folder).
    out_path : str or Path
        JSONL results file.
    change_masks_dir : str or Path, optional
        Folder the change masks are written to (created, with its parents, when missing); by default
        ``<out stem>_masks/`` next to `out_path`. Each line's ``change_mask`` is relative to `out_path`'s
        folder wherever this folder is.
    lesion_masks_dir : str or Path, optional
        Folder of baseline lesion masks named like the baseline file's stem.
    recurrence_scorer : callable, optional
        ``(analysis, reference_image, aligned_image) -> float`` in 0-1, called
        for aligned pairs; when omitted (or for a pair that could not be
        aligned) the change score stands in for it and a reason says so.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    summary : dict
        ``pairs``, ``errors``, ``flagged``, ``unusable``, ``median_seconds``, ``out``.
    """
    manifest_path = Path(manifest_path)
    out_path = Path(out_path)
    with open(manifest_path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"pair_id", "baseline", "followup"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"manifest {manifest_path} lacks columns {sorted(missing)}; "
                             "it needs pair_id, baseline, followup.")
        rows = list(reader)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    mask_dir = Path(change_masks_dir) if change_masks_dir is not None else out_path.parent / f"{out_path.stem}_masks"
    mask_dir.mkdir(parents=True, exist_ok=True)
    # The contract: change_mask is a path relative to RESULTS' folder, also for a --masks folder elsewhere.
    mask_rel_dir = Path(os.path.relpath(mask_dir, out_path.parent)).as_posix()
    root = manifest_path.parent
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc="pairs", unit="pair", file=sys.stderr)
    summary = {"pairs": 0, "errors": 0, "flagged": 0, "unusable": 0, "out": str(out_path)}
    seconds = []
    with open(out_path, "w") as out:
        for row in rows:
            pair_id = str(row.get("pair_id") or "").strip()
            start = time.perf_counter()
            summary["pairs"] += 1
            try:
                if not pair_id:
                    raise ValueError("empty pair_id; give every manifest row an id.")
                reference = load_rgb(root / row["baseline"])
                moving = load_rgb(root / row["followup"])
                reference_mask = _find_mask(lesion_masks_dir, row["baseline"])
                if reference_mask is not None and reference_mask.shape != reference.shape[:2]:
                    reference_mask = None
                analysis = analyze_pair(reference, moving, reference_mask=reference_mask)
                scale = pair_scale(detect_sticker(reference), detect_sticker(moving), analysis.homography)
                if recurrence_scorer is None:
                    recurrence = analysis.change_score
                    note = "recurrence score is the change score (no recurrence model loaded)"
                elif not analysis.registered:
                    recurrence = analysis.change_score
                    note = "recurrence score not computed: the photos could not be aligned"
                else:
                    recurrence = float(np.clip(
                        recurrence_scorer(analysis, reference, analysis.aligned_image), 0, 1))
                    note = None
                # The row number keeps names unique when two ids clean to the same name.
                mask_name = f"{summary['pairs']:05d}_{_safe_name(pair_id)}.png"
                Image.fromarray(analysis.change_mask.astype(np.uint8) * 255).save(mask_dir / mask_name)
                record = _record(pair_id, analysis, recurrence, note,
                                 f"{mask_rel_dir}/{mask_name}", time.perf_counter() - start, scale)
                summary["flagged"] += record["flag"]
                summary["unusable"] += not record["quality"]["usable"]
                seconds.append(record["seconds"])
            except Exception as exc:  # noqa: BLE001 - one bad pair must not stop the batch
                summary["errors"] += 1
                record = {"pair_id": pair_id, "error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(record) + "\n")
            out.flush()
    summary["median_seconds"] = float(np.median(seconds)) if seconds else None
    return summary


def main(argv=None):
    """``python -m registration.batch MANIFEST.csv --out RESULTS.jsonl [--masks DIR] [--lesion-masks DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--out", required=True)
    parser.add_argument("--masks", default=None, help="folder for the change masks (created)")
    parser.add_argument("--lesion-masks", default=None, help="folder of baseline lesion masks")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    summary = run_batch(args.manifest, args.out, change_masks_dir=args.masks, lesion_masks_dir=args.lesion_masks,
                        progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
