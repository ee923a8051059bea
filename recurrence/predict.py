"""Inference, apart from training.

    scorer = load_scorer()                      # newest recurrence/checkpoints/*.pt or $RECURRENCE_CHECKPOINT
    p = scorer.score_lesion(image_rgb_uint8, mask=None, history={"bleed": True})
    out = scorer.score_regions(followup, baseline, regions, diagnosis="melanoma", years_since_surgery=1.5,
                               answers={"bleed": True})
    score_manifest("manifest.csv", "results.jsonl")   # the contract's score-lesions format

All scores are calibrated probabilities in [0, 1].
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np
import torch

from .augment import dihedral, eval_batch
from .checkpoint import load_checkpoint
from .crops import crop_region
from .cutout import lesion_cutout
from .data import HISTORY_COLUMNS, load_mask, load_rgb, resize_rgb
from .encoding import PATIENT_FEATURES, PATIENT_KEYS, decode_answers, encode_answers, encode_patient, encode_region
from .features import N_IMAGE_FEATURES, lesion_features
from .metrics import apply_calibration
from .model import ModelConfig, ScarWatchModel

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
OPERATING_POINTS = ("sensitivity_first", "specificity_first")

_ANSWER_PHRASES = {
    "bleed": "patient reports bleeding",
    "grew": "patient reports that it grew",
    "itch": "patient reports itching",
    "hurt": "patient reports pain",
    "changed": "patient reports a change",
    "elevation": "patient reports it is raised",
}


def _natural_key(p: Path):
    return [int(t) if t.isascii() and t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def default_checkpoint() -> Path:
    env = os.environ.get("RECURRENCE_CHECKPOINT")
    if env:
        return Path(env)
    found = sorted(CHECKPOINT_DIR.glob("*.pt"), key=_natural_key)
    if not found:
        raise FileNotFoundError(f"no checkpoint in {CHECKPOINT_DIR}; train one with `python -m recurrence.train` "
                                f"or set RECURRENCE_CHECKPOINT")
    return found[-1]


def _check_image(image, name="image") -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"{name} must be an RGB array of shape (H, W, 3), got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (0-255), got {a.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)")
    if min(a.shape[:2]) < 4:
        raise ValueError(f"{name} is too small: {a.shape}")
    return np.ascontiguousarray(a[..., :3])


def _history_dict(history) -> dict | None:
    if history is None:
        return None
    if isinstance(history, Mapping):
        return dict(history)
    raise ValueError("history must be a dict like {'bleed': True, 'grew': False} (missing keys = unknown)")


class Scorer:
    """A loaded checkpoint. Thread-compatible for reads (no state changes after load)."""

    def __init__(self, checkpoint: dict, path: Path | None = None):
        self.path = path
        self.checkpoint = checkpoint
        self.config = ModelConfig(**checkpoint["model_args"])
        expected = N_IMAGE_FEATURES + self.config.n_history + len(PATIENT_FEATURES)
        if self.config.n_features not in (0, expected):
            raise ValueError(f"{path or 'checkpoint'} expects {self.config.n_features} hand-made features, this code "
                             f"makes {expected}: it was trained by an older version; retrain with "
                             f"python -m recurrence.train")
        self.model = ScarWatchModel(self.config)
        self.model.load_state_dict(checkpoint["model"])
        self.model.eval()
        self.version: str = checkpoint["version"]
        pre = checkpoint["preprocess"]
        self.cache_size = int(pre["cache_size"])
        self.image_size = int(pre["image_size"])
        self.tta = int(pre.get("tta", 1))
        self.blend = pre.get("blend", {"cnn": 1.0, "features": 0.0})
        self.crop = pre.get("crop", {"context": 2.0, "min_side": 48, "size": self.config.crop_size})
        self.calibration = checkpoint["calibration"]
        self.thresholds = checkpoint["thresholds"]
        self.lesion_thresholds = checkpoint.get("lesion_thresholds", {})

    # ------------------------------------------------------------------ lesions
    @torch.no_grad()
    def _lesion_logits(self, images: Sequence[np.ndarray], masks, histories, *, with_history=True) -> np.ndarray:
        H = np.stack([encode_answers(h) for h in histories]) if with_history else np.zeros((len(images), 12), np.float32)
        wc = float(self.blend.get("cnn", 1.0))
        z = np.zeros(len(images), np.float64)
        if wc:  # the CNN is skipped when the validation-picked blend gives it no weight
            small = np.stack([resize_rgb(im, self.cache_size) for im in images])
            x = eval_batch(small, self.image_size)
            t = max(1, self.tta)
            nets = self.model.lesion_nets
            z_cnn = sum(net.logit_from_embedding(sum(net.embed(dihedral(x, k)) for k in range(t)) / t,
                                                 torch.from_numpy(H)) for net in nets) / len(nets)
            z = wc * z_cnn.numpy().astype(np.float64)
        wf = float(self.blend.get("features", 0.0))
        if wf and self.model.features is not None:
            P = np.stack([encode_patient(h if with_history else None) for h in histories])
            F = np.stack([np.concatenate([lesion_features(im, m), h, p])
                          for im, m, h, p in zip(images, masks, H, P)])
            z = z + wf * self.model.features(torch.from_numpy(F))[0].numpy()
        return z

    def score_lesions(self, images: Sequence[np.ndarray], *, masks: Sequence | None = None,
                      histories: Sequence | None = None, modalities: Sequence | None = None,
                      batch_size: int = 32) -> list[float]:
        """Calibrated malignancy probability of each lesion image.

        images : sequence of ndarray (H, W, 3) uint8 RGB; masks : optional sequence of (H, W) arrays or None
        (nonzero = lesion); histories : optional sequence of dicts (grew, itch, bleed, hurt, changed,
        elevation -> bool/0/1/None; age in years, sex male/female, region = body site as in the shared
        manifest; missing keys are unknown); modalities : optional sequence of 'clinical', 'dermoscopy' or
        None, as declared by whoever took the image: a photo declared clinical is first cut out around its
        lesion, as the training images were (:func:`recurrence.cutout.lesion_cutout`). Returns a list of
        floats in [0, 1].
        """
        images = [_check_image(im) for im in images]
        n = len(images)
        masks = list(masks) if masks is not None else [None] * n
        histories = [_history_dict(h) for h in histories] if histories is not None else [None] * n
        if len(masks) != n or len(histories) != n:
            raise ValueError("masks and histories must have one entry per image")
        masks = [None if m is None else (np.asarray(m) > 0) for m in masks]
        if modalities is not None:
            if len(modalities) != n:
                raise ValueError("modalities must have one entry per image")
            cut = [lesion_cutout(im, mask=m, modality=mo)[:2] for im, m, mo in zip(images, masks, modalities)]
            images, masks = [c[0] for c in cut], [c[1] for c in cut]
        out = []
        for i in range(0, n, batch_size):
            z = self._lesion_logits(images[i:i + batch_size], masks[i:i + batch_size], histories[i:i + batch_size])
            out += [float(p) for p in apply_calibration(z, self.calibration["lesion"])]
        return out

    def score_lesion(self, image_rgb_uint8: np.ndarray, *, mask=None, history=None) -> float:
        """Calibrated malignancy probability of one lesion image (see score_lesions)."""
        return self.score_lesions([image_rgb_uint8], masks=[mask], histories=[history])[0]

    # ------------------------------------------------------------------ regions
    def _crop_tensor(self, image, bbox):
        c, box = crop_region(image, bbox, int(self.crop["size"]), context=float(self.crop["context"]),
                             min_side=int(self.crop["min_side"]))
        return eval_batch(c[None], self.config.crop_size), c, box

    def score_regions(self, followup_image: np.ndarray, baseline_image: np.ndarray, regions: Sequence[Mapping], *,
                      diagnosis: str | None = None, years_since_surgery: float | None = None,
                      answers: Mapping | None = None, operating_point: str = "sensitivity_first",
                      mm_per_px: float | None = None, saliency: bool = True) -> dict:
        """Recurrence probability per changed region and for the photo.

        followup_image, baseline_image : ndarray (H, W, 3) uint8 RGB, aligned, in the baseline frame.
        regions : list of the pipeline's region dicts {"bbox": [x0, y0, x1, y1], "area_px", "growth_pct",
        "delta_e", "distance_to_lesion_px", "kind", "score"}.
        Returns {"photo_score", "regions": [{"score", "reasons", "saliency"}], "reasons",
        "operating_point", "threshold", "flag", "version"}; photo_score = max over regions (0 without regions).
        """
        fol = _check_image(followup_image, "followup_image")
        base = _check_image(baseline_image, "baseline_image")
        if fol.shape != base.shape:
            raise ValueError(f"followup_image {fol.shape} and baseline_image {base.shape} must be aligned to the "
                             f"same frame (warp the follow-up into the baseline frame first)")
        if operating_point not in OPERATING_POINTS:
            raise ValueError(f"operating_point must be one of {OPERATING_POINTS}")
        if diagnosis is not None and diagnosis.lower() not in ("melanoma", "bcc", "scc", "other"):
            raise ValueError("diagnosis must be melanoma, bcc, scc, other or None")
        answers = _history_dict(answers)
        thr = float(self.thresholds[operating_point])
        out_regions = []
        for reg in regions:
            if "bbox" not in reg:
                raise ValueError(f"region without bbox: {reg}")
            xf, cf, box = self._crop_tensor(fol, reg["bbox"])
            xb, cb, _ = self._crop_tensor(base, reg["bbox"])
            meta = torch.from_numpy(encode_region(reg, diagnosis=diagnosis, years_since_surgery=years_since_surgery,
                                                  answers=answers))[None]
            z, z_app, sal = self._region_forward(xf, xb, meta, saliency)
            p = float(apply_calibration([z], self.calibration["region"])[0])
            p_app = float(apply_calibration([z_app], None)[0])  # CNN appearance logit of the follow-up crop
            side = box[2] - box[0]
            sal_img = cv2.resize(sal, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32) \
                if sal is not None else None
            out_regions.append({"score": p, "appearance_score": p_app, "bbox": list(reg["bbox"]),
                                "crop_box": list(box),
                                "reasons": self._region_reasons(reg, cf, cb, p_app, mm_per_px, answers),
                                "saliency": sal_img})
        photo = max((r["score"] for r in out_regions), default=0.0)
        reasons = []
        ranked = sorted(out_regions, key=lambda r: -r["score"])
        for r in ranked[:2]:
            if r is ranked[0] or r["score"] >= thr:
                seen = {x.split(" (")[0] for x in reasons}
                reasons += [s for s in r["reasons"] if not s.startswith("patient reports") and s.split(" (")[0] not in seen]
        reasons += _answer_reasons(answers)
        if diagnosis:
            ctx = f"{diagnosis.upper() if diagnosis != 'melanoma' else 'melanoma'} excised"
            if years_since_surgery is not None:
                ctx += f" {years_since_surgery:.1f} years ago"
            reasons.append(ctx)
        return {"photo_score": photo, "regions": out_regions, "reasons": reasons, "operating_point": operating_point,
                "threshold": thr, "flag": bool(photo >= thr), "version": self.version}

    def _region_forward(self, xf, xb, meta, want_saliency: bool):
        ch = self.model.change
        if not want_saliency:
            with torch.no_grad():
                return self._region_logits(ch, xf, xb, meta) + (None,)
        with torch.enable_grad():
            xf = xf.clone().requires_grad_(True)
            z, z_app = self._region_logits(ch, xf, xb, meta, keep_graph=True)
            zt = z
            (g,) = torch.autograd.grad(zt, xf)
        sal = g[0].abs().amax(0).numpy()
        sal = cv2.GaussianBlur(sal, (0, 0), 2.0)
        sal = sal / (sal.max() + 1e-12)
        return float(z.detach()), float(z_app), sal.astype(np.float32)

    def _region_logits(self, ch, xf, xb, meta, keep_graph=False):
        emb = self.model.lesion.embed(torch.cat([xf, xb], 0))
        ef, eb = emb[:1], emb[1:]
        z = ch.forward_embeddings(ef, eb, meta)[0][0]
        z_app = self.model.lesion.logit_from_embedding(ef)[0]
        if keep_graph:
            return z, float(z_app.detach())
        return float(z), float(z_app)

    def _region_reasons(self, reg, crop_f, crop_b, p_app, mm_per_px, answers) -> list[str]:
        kind = reg.get("kind", "other")
        area_px = float(reg.get("area_px") or 0)
        if mm_per_px:
            size = f"{area_px * mm_per_px ** 2:.1f} mm²"
        else:
            size = f"{int(round(area_px))} px"
        d = float(reg.get("distance_to_lesion_px") or 0.0)
        scale = math.sqrt(max(area_px, 1.0))
        if d <= 0.5:
            where = "on the scar"
        elif d <= 2 * scale or (mm_per_px and d * mm_per_px <= 5):
            where = "near the scar"
        else:
            where = f"{d * mm_per_px:.0f} mm from the scar" if mm_per_px else f"{d:.0f} px from the scar"
        # colour of the change from the crops' centre (the bbox sits in the middle half of the window)
        c = crop_f.shape[0] // 4
        lf = cv2.cvtColor(crop_f[c:-c, c:-c], cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32).mean(0)
        lb = cv2.cvtColor(crop_b[c:-c, c:-c], cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32).mean(0)
        tone = "dark " if lf[0] < lb[0] - 3 else ("red " if lf[1] > lb[1] + 3 else "")
        reasons = []
        if kind == "new_lesion":
            reasons.append(f"new {tone}area {size} {where}")
        elif kind == "growth":
            g = reg.get("growth_pct")
            reasons.append(f"lesion grew {g:.0f} % ({size}) {where}" if g is not None else f"lesion grew ({size}) {where}")
        elif kind == "darkening":
            reasons.append(f"area darkened (ΔE {float(reg.get('delta_e') or 0):.0f}) {size} {where}")
        elif kind == "redness":
            reasons.append(f"new redness {size} {where}")
        else:
            reasons.append(f"changed {tone}area {size} {where}")
        g = reg.get("growth_pct")
        if kind != "growth" and g is not None and g >= 10:
            reasons.append(f"lesion grew {g:.0f} %")
        if p_app >= 0.5:
            reasons.append(f"follow-up appearance looks suspicious (appearance score {p_app:.2f})")
        reasons += _answer_reasons(answers)
        return reasons


def _answer_reasons(answers) -> list[str]:
    known = decode_answers(answers)
    return [_ANSWER_PHRASES[k] for k in ("bleed", "grew", "changed", "elevation", "itch", "hurt") if known.get(k)]


_CACHE: dict = {}


def load_scorer(path: str | os.PathLike | None = None) -> Scorer:
    """Load (once per path) a checkpoint: ``path``, else $RECURRENCE_CHECKPOINT, else the newest
    recurrence/checkpoints/*.pt (natural sort of file names: recurrence-v2.pt after recurrence-v1.pt)."""
    p = Path(path) if path is not None else default_checkpoint()
    key = (str(p.resolve()), p.stat().st_mtime)
    if key not in _CACHE:
        ckpt = load_checkpoint(p)
        for k in ("model", "model_args", "preprocess", "thresholds", "calibration", "version"):
            if k not in ckpt:
                raise ValueError(f"{p} is not a recurrence checkpoint (missing {k!r})")
        _CACHE[key] = Scorer(ckpt, p)
    return _CACHE[key]


def row_history(row: Mapping) -> dict | None:
    """A manifest row's answers and patient facts, as ``history`` (None when it has none)."""
    h = {k: row.get(k) for k in HISTORY_COLUMNS + PATIENT_KEYS if row.get(k) not in (None, "")}
    return h or None


#: The manifest's ``modality`` column: the shared lesion manifest's words and the product's.
_MODALITY_WORDS = {"clinical": "clinical", "clinical_phone": "clinical", "phone": "clinical",
                   "dermoscopy": "dermoscopy", "": None}


def _row_modality(row: Mapping) -> str | None:
    word = (row.get("modality") or "").strip().lower()
    if word not in _MODALITY_WORDS:
        raise ValueError(f"modality {word!r} is not one of {sorted(w for w in _MODALITY_WORDS if w)}")
    return _MODALITY_WORDS[word]


def _score_or_error(scorer: Scorer, image, mask, history) -> float | str:
    try:
        return scorer.score_lesions([image], masks=[mask], histories=[history])[0]
    except Exception as e:  # noqa: BLE001 - reported on the image's own line
        return f"{type(e).__name__}: {e}"


def score_manifest(manifest_csv, out_jsonl, *, scorer: Scorer | None = None, batch_size: int = 32) -> int:
    """Contract ``score-lesions``: MANIFEST columns image_id, image (optional mask, modality and the history
    columns itch, grew, hurt, changed, bleed, elevation, age, sex, region); paths relative to the manifest's
    folder. Writes one JSON line per image {"image_id", "malignancy_score", "lesion"} (``lesion``: how the
    image was prepared, see :func:`recurrence.cutout.lesion_cutout`), or {"image_id", "error"} when it cannot
    be read. Returns lines written."""
    manifest_csv, out_jsonl = Path(manifest_csv), Path(out_jsonl)
    scorer = scorer or load_scorer()
    root = manifest_csv.parent
    with open(manifest_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"image_id", "image"} <= set(rows[0]):
        raise ValueError(f"{manifest_csv} needs columns image_id and image")
    out_jsonl.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out_jsonl, "w") as out:
        for i in range(0, len(rows), batch_size):
            chunk = rows[i:i + batch_size]
            ok, imgs, masks, hists, lines, hows = [], [], [], [], {}, {}
            for j, r in enumerate(chunk):
                try:  # all read and cut out before any is kept, so the lists stay in step
                    img = load_rgb(root / r["image"])
                    mask = load_mask(root / r["mask"]) if r.get("mask") else None
                    hist = row_history(r)
                    img, mask, how = lesion_cutout(img, mask=mask, modality=_row_modality(r))
                except Exception as e:  # one bad file never stops the batch
                    lines[j] = {"image_id": r.get("image_id"), "error": f"{type(e).__name__}: {e}"}
                    continue
                imgs.append(img)
                masks.append(mask)
                hows[j] = how
                hists.append(hist)
                ok.append(j)
            if ok:
                try:
                    scores = scorer.score_lesions(imgs, masks=masks, histories=hists)
                except Exception:  # noqa: BLE001 - find the one image that breaks the chunk
                    scores = [_score_or_error(scorer, im, m, h) for im, m, h in zip(imgs, masks, hists)]
                for j, s in zip(ok, scores):
                    lines[j] = ({"image_id": chunk[j]["image_id"], "error": s} if isinstance(s, str) else
                                {"image_id": chunk[j]["image_id"], "malignancy_score": round(float(s), 6),
                                 "lesion": hows[j]})
            for j in range(len(chunk)):
                out.write(json.dumps(lines[j]) + "\n")
                n += 1
    return n


__all__ = ["Scorer", "load_scorer", "score_manifest", "default_checkpoint", "OPERATING_POINTS"]
