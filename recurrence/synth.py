"""Synthesised change pairs (crop level) and training of the siamese change head.

Each example is (baseline crop, follow-up crop, region measurements, context, label):

- baseline: real skin cut from a dermoscopy image away from its lesion (or a skin texture
  in that image's skin colour), with a drawn scar line (sometimes sutures, sometimes a
  small pre-existing lesion);
- follow-up, by scenario:
  ``unchanged`` (0): same crop, misalignment jitter, its own photometric jitter;
  ``confounder`` (0): + hair, shadow, glare, ink line or diffuse healing redness;
  ``new_lesion`` (label = the pasted lesion's ``malignant``): a real lesion cut out of
  another image (mask given or estimated) pasted near the scar;
  ``growth`` (label = pasted lesion's ``malignant``): pre-existing lesion drawn larger;
  ``darkening`` (1): new pigmentation of the scar / a pre-existing spot.
- measurements follow the pipeline's region dict and are computed from the crops
  (changed-area bbox, area, Delta E in Lab, distance to the scar); context: diagnosis,
  years since surgery, answers (from PAD-UFES-20 rows of the matching class, often missing).

Lesions pasted into training pairs come only from training groups; validation pairs only
from validation groups.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from .augment import normalize, photometric
from .crops import crop_region
from .data import LesionSet, load_rgb
from .encoding import ANSWER_KEYS, DIAGNOSES, encode_region
from .metrics import (apply_calibration, ece, fit_platt, roc_auc, sens_spec, threshold_for_sensitivity,
                      threshold_for_specificity)

SCENARIOS = ("unchanged", "confounder", "new_lesion", "growth", "darkening")
SCENARIO_P = (0.25, 0.25, 0.25, 0.15, 0.10)
SENSITIVITY_TARGET = 0.95
SPECIFICITY_TARGET = 0.90


def _lab(x: np.ndarray) -> np.ndarray:
    """float RGB [0,1] -> Lab (L 0-100)."""
    return cv2.cvtColor(np.clip(x, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)


def _skin(data: LesionSet, rng, C: int) -> np.ndarray:
    """Real skin window (no lesion, no black background) scaled to C, or a textured fill."""
    n, S = data.images.shape[:2]
    for _ in range(20):
        i = int(rng.integers(n))
        img, m = data.images[i], data.masks[i]
        w = int(rng.integers(S // 5, S // 3))
        y, x = rng.integers(0, S - w, 2)
        win = img[y:y + w, x:x + w]
        if m[y:y + w, x:x + w].any() or (win.max(axis=2) < 20).any():
            continue
        if win.mean() < 60:
            continue
        return cv2.resize(win, (C, C), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    # textured fill in a plausible skin colour
    base = np.array([0.85, 0.65, 0.55], np.float32) * rng.uniform(0.6, 1.1)
    low = cv2.GaussianBlur(rng.normal(0, 1, (C, C)).astype(np.float32), (0, 0), 8)[..., None]
    tex = base[None, None] * (1 + 0.15 * low / (np.abs(low).max() + 1e-6)) + rng.normal(0, 0.01, (C, C, 3))
    return np.clip(tex, 0, 1).astype(np.float32)


def _scar(x: np.ndarray, rng) -> tuple[np.ndarray, tuple]:
    C = x.shape[0]
    m = np.zeros((C, C), np.float32)
    ang = rng.uniform(0, math.pi)
    L = rng.uniform(0.5, 1.0) * C
    cx, cy = C / 2 + rng.normal(0, C * 0.08, 2)
    p0 = (int(cx - L / 2 * math.cos(ang)), int(cy - L / 2 * math.sin(ang)))
    p1 = (int(cx + L / 2 * math.cos(ang)), int(cy + L / 2 * math.sin(ang)))
    cv2.line(m, p0, p1, 1.0, int(rng.integers(2, 7)))
    if rng.random() < 0.3:  # suture marks
        for t in np.linspace(0.15, 0.85, int(rng.integers(3, 7))):
            px, py = p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1])
            dx, dy = -math.sin(ang) * 5, math.cos(ang) * 5
            cv2.line(m, (int(px - dx), int(py - dy)), (int(px + dx), int(py + dy)), 0.8, 1)
    m = cv2.GaussianBlur(m, (0, 0), 1.2)
    col = np.array([0.92, 0.62, 0.62] if rng.random() < 0.6 else [0.93, 0.88, 0.82], np.float32)
    a = rng.uniform(0.3, 0.6) * m[..., None]
    return x * (1 - a) + col * a, (p0, p1)


def _dist_to_segment(px, py, seg) -> float:
    (x0, y0), (x1, y1) = seg
    vx, vy = x1 - x0, y1 - y0
    t = np.clip(((px - x0) * vx + (py - y0) * vy) / (vx * vx + vy * vy + 1e-9), 0, 1)
    return float(math.hypot(px - (x0 + t * vx), py - (y0 + t * vy)))


def _lesion_sprite(data: LesionSet, i: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Tight RGB float + alpha of the lesion in cached image i."""
    img = (data.images_jpeg[i] if rng.random() < 0.5 else data.images[i]).astype(np.float32) / 255.0
    m = data.masks[i]
    ys, xs = np.nonzero(m)
    if len(ys) < 20:
        S = img.shape[0]
        ys, xs = np.mgrid[S // 4:3 * S // 4, S // 4:3 * S // 4].reshape(2, -1)
        m = np.zeros_like(m)
        m[ys, xs] = True
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    alpha = cv2.GaussianBlur(m[y0:y1, x0:x1].astype(np.float32), (0, 0), 1.5)
    return img[y0:y1, x0:x1], alpha


def _paste(x, sprite, alpha, cx, cy, size, opacity=1.0):
    h, w = alpha.shape
    s = size / max(h, w)
    nh, nw = max(2, int(h * s)), max(2, int(w * s))
    sp = cv2.resize(sprite, (nw, nh), interpolation=cv2.INTER_AREA)
    al = cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_AREA) * opacity
    C = x.shape[0]
    out = x.copy()
    y0, x0 = int(cy - nh / 2), int(cx - nw / 2)
    ya, xa = max(0, y0), max(0, x0)
    yb, xb = min(C, y0 + nh), min(C, x0 + nw)
    if yb <= ya or xb <= xa:
        return out, np.zeros((C, C), np.float32)
    a = al[ya - y0:yb - y0, xa - x0:xb - x0, None]
    out[ya:yb, xa:xb] = out[ya:yb, xa:xb] * (1 - a) + sp[ya - y0:yb - y0, xa - x0:xb - x0] * a
    m = np.zeros((C, C), np.float32)
    m[ya:yb, xa:xb] = a[..., 0]
    return out, m


def _confound(x, rng):
    C = x.shape[0]
    kind = rng.choice(["hair", "shadow", "glare", "ink", "redness"])
    out = x.copy()
    if kind == "hair":
        m = np.zeros((C, C), np.float32)
        for _ in range(int(rng.integers(1, 6))):
            pts = np.cumsum(rng.normal(0, 6, (8, 2)), 0) + rng.uniform(0, C, 2)
            cv2.polylines(m, [pts.astype(np.int32)], False, 1.0, 1)
        a = cv2.GaussianBlur(m, (0, 0), 0.6)[..., None] * 0.8
        out = out * (1 - a) + np.array([0.12, 0.08, 0.06], np.float32) * a
        rk = "other"
    elif kind == "shadow":
        yy, xx = np.mgrid[:C, :C].astype(np.float32) / C
        g = np.clip((xx * math.cos(rng.uniform(0, 6.3)) + yy * math.sin(rng.uniform(0, 6.3)) + rng.uniform(-.5, .5)) * 3, 0, 1)
        out = out * (1 - rng.uniform(0.2, 0.5) * g[..., None])
        rk = "darkening"
    elif kind == "glare":
        m = np.zeros((C, C), np.float32)
        cv2.ellipse(m, (int(rng.uniform(0.1 * C, 0.9 * C)), int(rng.uniform(0.1 * C, 0.9 * C))),
                    (int(rng.integers(3, 12)), int(rng.integers(2, 8))), rng.uniform(0, 180), 0, 360, 1.0, -1)
        a = cv2.GaussianBlur(m, (0, 0), 2)[..., None] * 0.9
        out = out * (1 - a) + a
        rk = "other"
    elif kind == "ink":
        m = np.zeros((C, C), np.float32)
        p = rng.uniform(0, C, 4).astype(int)
        cv2.line(m, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), 1.0, int(rng.integers(1, 4)))
        a = cv2.GaussianBlur(m, (0, 0), 0.8)[..., None] * 0.7
        out = out * (1 - a) + np.array([0.25, 0.2, 0.55], np.float32) * a
        rk = "new_lesion"
    else:
        m = np.zeros((C, C), np.float32)
        cv2.circle(m, (int(rng.uniform(0.2 * C, 0.8 * C)), int(rng.uniform(0.2 * C, 0.8 * C))),
                   int(rng.integers(C // 10 + 1, C // 3 + 2)), 1.0, -1)
        a = cv2.GaussianBlur(m, (0, 0), 6)[..., None] * rng.uniform(0.15, 0.35)
        out = out * (1 - a) + np.array([0.85, 0.35, 0.35], np.float32) * a
        rk = "redness"
    return np.clip(out, 0, 1), rk


def _jitter(x, rng, px=3.0, deg=4.0, sc=0.04):
    C = x.shape[0]
    M = cv2.getRotationMatrix2D((C / 2, C / 2), rng.uniform(-deg, deg), 1 + rng.uniform(-sc, sc))
    M[:, 2] += rng.uniform(-px, px, 2)
    return cv2.warpAffine(x, M, (C, C), borderMode=cv2.BORDER_REFLECT)


def _answers(data: LesionSet, label: int, rng) -> dict | None:
    if rng.random() < 0.4:
        return None
    pad = [i for i, r in enumerate(data.rows) if r["source"] == "pad" and int(r["malignant"]) == label]
    if not pad:
        return None
    r = data.rows[pad[int(rng.integers(len(pad)))]]
    return {k: r.get(k) for k in ANSWER_KEYS if rng.random() > 0.2}


def make_pair(data: LesionSet, pool: np.ndarray, rng, C: int, scenario: str | None = None) -> dict:
    """One synthetic example; images float32 (C,C,3) in [0,1]."""
    scenario = scenario or SCENARIOS[int(rng.choice(len(SCENARIOS), p=SCENARIO_P))]
    base, seg = _scar(_skin(data, rng, C), rng)
    j = int(pool[int(rng.integers(len(pool)))])
    sprite, alpha = _lesion_sprite(data, j, rng)
    src_label = int(data.labels[j])
    sc_ = rng.uniform(0.15, 0.5)
    cx, cy = C / 2 + rng.normal(0, C * 0.1, 2)
    pre_existing = scenario in ("growth", "darkening") or (scenario in ("unchanged", "confounder") and rng.random() < 0.35)
    size0 = C * rng.uniform(0.12, 0.3)
    if pre_existing:
        base, m0 = _paste(base, sprite, alpha, cx, cy, size0)
    follow = _jitter(base, rng)
    changed = None
    growth = None
    kind = "other"
    label = 0
    if scenario == "unchanged":
        kind = str(rng.choice(["other", "darkening", "redness", "growth" if pre_existing else "new_lesion"]))
    elif scenario == "confounder":
        follow, kind = _confound(follow, rng)
    elif scenario == "new_lesion":
        follow, changed = _paste(follow, sprite, alpha, cx, cy, C * sc_)
        kind, label = "new_lesion", src_label
    elif scenario == "growth":
        g = rng.uniform(0.25, 1.5)
        f2 = _jitter(_scar(_skin(data, rng, C), rng)[0], rng) * 0 + follow  # keep follow-up skin
        follow, changed = _paste(f2, sprite, alpha, cx, cy, size0 * math.sqrt(1 + g))
        growth, kind, label = 100 * g, "growth", src_label
    elif scenario == "darkening":
        m = np.zeros((C, C), np.float32)
        cv2.circle(m, (int(cx), int(cy)), int(size0 * rng.uniform(0.4, 0.8)), 1.0, -1)
        m = cv2.GaussianBlur(m, (0, 0), 3)
        a = (m * rng.uniform(0.3, 0.6))[..., None]
        follow = follow * (1 - a) + np.array([0.3, 0.18, 0.12], np.float32) * a
        changed, kind, label = m, "darkening", 1
    # measurements from the crops
    lb, lf = _lab(base), _lab(follow)
    de = np.linalg.norm(lf - lb, axis=2)
    cm = (changed > 0.3) if changed is not None else (cv2.GaussianBlur(de, (0, 0), 2) > 4)
    if cm.sum() < 4:
        cm = np.zeros((C, C), bool)
        r = int(rng.integers(4, 12))
        cm[int(cy) - r:int(cy) + r, int(cx) - r:int(cx) + r] = True
    ys, xs = np.nonzero(cm)
    k = rng.uniform(1.0, 5.0)  # crop px -> photo px
    region = {
        "bbox": [float(xs.min() * k), float(ys.min() * k), float(xs.max() * k), float(ys.max() * k)],
        "area_px": int(cm.sum() * k * k),
        "growth_pct": (float(growth + rng.normal(0, 8)) if growth is not None else
                       (float(rng.normal(0, 10)) if pre_existing and rng.random() < 0.5 else None)),
        "delta_e": float(de[cm].mean()),
        "distance_to_lesion_px": _dist_to_segment(xs.mean(), ys.mean(), seg) * k,
        "kind": kind,
        "score": float(np.clip(1 / (1 + math.exp(-(de[cm].mean() - 6) / 3)) + rng.normal(0, 0.1), 0, 1)),
    }
    ctx = {
        "diagnosis": str(rng.choice(DIAGNOSES)) if rng.random() < 0.9 else None,
        "years_since_surgery": float(rng.uniform(0.1, 5)) if rng.random() < 0.8 else None,
        "answers": _answers(data, label, rng),
    }
    return {"baseline": base, "followup": follow, "region": region, "context": ctx, "label": label,
            "scenario": scenario}


def build_pairs(data: LesionSet, pool: np.ndarray, n: int, seed: int, C: int, g: torch.Generator):
    rng = np.random.default_rng(seed)
    ex = [make_pair(data, pool, rng, C) for _ in range(n)]
    b = torch.from_numpy(np.stack([e["baseline"] for e in ex])).permute(0, 3, 1, 2).float()
    f = torch.from_numpy(np.stack([e["followup"] for e in ex])).permute(0, 3, 1, 2).float()
    b = normalize(photometric(b, g, 0.5))
    f = normalize(photometric(f, g, 0.5))
    meta = np.stack([encode_region(e["region"], **e["context"]) for e in ex])
    y = np.array([e["label"] for e in ex], np.float32)
    sc = np.array([e["scenario"] for e in ex])
    return f, b, meta, y, sc


def load_feedback(path: str, C: int):
    """Clinician-resolved regions (JSONL, see MODEL_CARD.md) -> tensors; unlabeled lines are skipped."""
    fs, bs, metas, ys = [], [], [], []
    base_dir = Path(path).parent
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        hist = (r.get("histology") or "").lower()
        if hist in ("malignant", "benign"):
            y = 1.0 if hist == "malignant" else 0.0
        elif r.get("outcome") in ("no_change", "benign_change"):
            y = 0.0
        else:
            continue
        fi = load_rgb(base_dir / r["followup_image"])
        bi = load_rgb(base_dir / r["baseline_image"])
        fc, _ = crop_region(fi, r["region"]["bbox"], C)
        bc, _ = crop_region(bi, r["region"]["bbox"], C)
        fs.append(fc)
        bs.append(bc)
        metas.append(encode_region(r["region"], diagnosis=r.get("diagnosis"),
                                   years_since_surgery=r.get("years_since_surgery"), answers=r.get("answers")))
        ys.append(y)
    if not ys:
        return None
    to = lambda a: normalize(torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float() / 255.0)
    return to(fs), to(bs), np.stack(metas), np.array(ys, np.float32)


@torch.no_grad()
def _embed(model, x, bs=256):
    model.lesion.eval()
    return torch.cat([model.lesion.embed(x[i:i + bs]) for i in range(0, len(x), bs)]) if len(x) else x.new_zeros(0)


def _fit_head(model, Ef, Eb, M, y, *, epochs, seed, zero_images=False, zero_meta=False, progress=False):
    ch = model.change
    params = [p for n, p in ch.named_parameters() if not n.startswith("lesion.")]
    torch.manual_seed(seed)
    for mod in (ch.img_proj, ch.meta_proj, ch.head):  # fresh head
        for m in mod.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-2)
    g = torch.Generator().manual_seed(seed)
    Mt, yt = torch.from_numpy(M), torch.from_numpy(y)
    if zero_images:
        Ef, Eb = torch.zeros_like(Ef), torch.zeros_like(Eb)
    if zero_meta:
        Mt = torch.zeros_like(Mt)
    it = range(epochs)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="change head", unit="epoch")
    for _ in it:
        ch.head.train()
        model.lesion.eval()
        perm = torch.randperm(len(yt), generator=g)
        for i in range(0, len(perm), 256):
            b = perm[i:i + 256]
            _, loss = ch.forward_embeddings(Ef[b], Eb[b], Mt[b], yt[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    ch.eval()


@torch.no_grad()
def _head_logits(model, Ef, Eb, M, zero_images=False, zero_meta=False):
    model.change.eval()
    Mt = torch.from_numpy(M)
    if zero_images:
        Ef, Eb = torch.zeros_like(Ef), torch.zeros_like(Eb)
    if zero_meta:
        Mt = torch.zeros_like(Mt)
    return model.change.forward_embeddings(Ef, Eb, Mt)[0].numpy()


def _same_lesion_pairs(data: LesionSet, data_dir: Path, val_only: bool):
    """Real re-captures of one unchanged lesion (HAM10000 pairs) as negatives, whole image as crop."""
    p = Path(data_dir) / "same_lesion_pairs.csv"
    if not p.exists():
        return None
    import csv
    idx = {r["image"]: i for i, r in enumerate(data.rows)}
    out = []
    for r in csv.DictReader(open(p)):
        a, b = idx.get(r["a"]), idx.get(r["b"])
        if a is None or b is None or bool(data.val[a]) != val_only:
            continue
        out.append((a, b))
    return out or None


def train_change_head(model, data: LesionSet, tr_idx, va_idx, *, n_pairs: int, epochs: int, seed: int,
                      feedback=None, data_dir=None, progress=True, log=print) -> dict:
    C = model.config.crop_size
    g = torch.Generator().manual_seed(seed + 1)
    n_val = max(32, n_pairs // 4)
    f, b, M, y, _ = build_pairs(data, tr_idx, n_pairs, seed + 11, C, g)
    fv, bv, Mv, yv, scv = build_pairs(data, va_idx, n_val, seed + 12, C, g)
    if feedback:
        fb = load_feedback(feedback, C)
        if fb is not None:
            f, b = torch.cat([f, fb[0]]), torch.cat([b, fb[1]])
            M, y = np.concatenate([M, fb[2]]), np.concatenate([y, fb[3]])
            log(f"added {len(fb[3])} clinician-labelled regions from {feedback}")
    Ef, Eb, Efv, Ebv = _embed(model, f), _embed(model, b), _embed(model, fv), _embed(model, bv)
    ablation = {}
    for name, zi, zm in (("images_only", False, True), ("measurements_and_history_only", True, False)):
        _fit_head(model, Ef, Eb, M, y, epochs=epochs, seed=seed, zero_images=zi, zero_meta=zm)
        ablation[name] = roc_auc(yv, _head_logits(model, Efv, Ebv, Mv, zi, zm))
    _fit_head(model, Ef, Eb, M, y, epochs=epochs, seed=seed, progress=progress)
    zv = _head_logits(model, Efv, Ebv, Mv)
    ablation["full (images + measurements + history)"] = roc_auc(yv, zv)
    cal = fit_platt(zv, yv)
    pv = apply_calibration(zv, cal)
    t1 = threshold_for_sensitivity(yv, pv, SENSITIVITY_TARGET)
    t2 = threshold_for_specificity(yv, pv, SPECIFICITY_TARGET)
    per_scn = {s: {"n": int((scv == s).sum()), "flagged_at_sensitivity_first": float((pv[scv == s] >= t1).mean()),
                   "positives": int(yv[scv == s].sum())} for s in SCENARIOS}
    metrics = {
        "validation_pairs": int(len(yv)), "train_pairs": int(len(y)),
        "auc_synthetic_validation": roc_auc(yv, zv), "ece_synthetic_validation": ece(yv, pv),
        "operating_points": {
            "sensitivity_first": dict(zip(("sensitivity", "specificity"), sens_spec(yv, pv, t1))),
            "specificity_first": dict(zip(("sensitivity", "specificity"), sens_spec(yv, pv, t2))),
        },
        "per_scenario": per_scn, "ablations_auc": ablation,
    }
    if data_dir is not None:
        pairs = _same_lesion_pairs(data, data_dir, val_only=True)
        if pairs:
            from .augment import eval_batch
            A = eval_batch(data.images[[a for a, _ in pairs]], C)
            B = eval_batch(data.images[[b for _, b in pairs]], C)
            Ms = np.stack([encode_region({"bbox": [0, 0, 90, 90], "area_px": 4000, "growth_pct": None,
                                          "delta_e": 8.0, "distance_to_lesion_px": 0.0, "kind": "other",
                                          "score": 0.5}) for _ in pairs])
            ps = apply_calibration(_head_logits(model, _embed(model, B), _embed(model, A), Ms), cal)
            metrics["same_lesion_recaptures_flagged"] = {
                "n": len(pairs), "sensitivity_first": float((ps >= t1).mean()),
                "specificity_first": float((ps >= t2).mean())}
    log(json.dumps(metrics, indent=1, default=float))
    return {"thresholds": {"sensitivity_first": t1, "specificity_first": t2}, "calibration": cal,
            "metrics": metrics,
            "crop": {"context": 2.0, "min_side": 48, "size": C,
                     "how": "square window of side max(2 x bbox long side, 48 px) centred on bbox, edges "
                            "replicated, resized to crop_size; same normalisation as lesions"}}
