"""Train the recurrence model from the shared lesion folder.

    python -m recurrence.train [--data ../shared/data/lesions] [--out recurrence/checkpoints/recurrence-v1.pt]
                               [--seed 0] [--minutes 30] [--feedback FILE.jsonl]

Steps: load + cache images (group split: sha1(source/group) % 100 < 20 -> validation),
train the lesion CNN with phone-photo augmentation, fit the hand-made feature model,
blend + calibrate on validation, synthesise change pairs and train the siamese change
head (shared, frozen appearance branch), pick operating points, write one checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .augment import augment_batch, dihedral, eval_batch
from .data import default_data_dir, data_hash, load_lesion_set, LesionSet
from .encoding import REGION_FEATURES
from .features import N_IMAGE_FEATURES
from .metrics import (apply_calibration, ece, fit_platt, roc_auc, sens_spec, threshold_for_sensitivity,
                      threshold_for_specificity)
from .model import ModelConfig, ScarWatchModel, FeatureLogit

SENSITIVITY_TARGET = 0.95
SPECIFICITY_TARGET = 0.90


# --------------------------------------------------------------------------- lesion CNN

def train_lesion_cnn(model: ScarWatchModel, data: LesionSet, idx: np.ndarray, *, epochs: int, batch_size: int,
                     lr: float, seed: int, deadline: float, history_dropout: float = 0.3,
                     use_history: bool = True, progress: bool = True, log=print) -> dict:
    cfg = model.config
    net = model.lesion
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    steps_per_epoch = max(1, len(idx) // batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1), pct_start=0.15)
    labels = torch.from_numpy(data.labels)
    hist = torch.from_numpy(data.history)
    step, stopped_early = 0, False
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="lesion CNN", unit="step")
    net.train()
    for ep in range(epochs):
        perm = torch.from_numpy(idx)[torch.randperm(len(idx), generator=g)]
        run = 0.0
        for s in range(steps_per_epoch):
            b = perm[s * batch_size:(s + 1) * batch_size].numpy()
            use_jpeg = (torch.rand(len(b), generator=g) < 0.5).numpy()
            raw = np.where(use_jpeg[:, None, None, None], data.images_jpeg[b], data.images[b])
            x = augment_batch(raw, cfg.image_size, g)
            h = hist[b].clone()
            drop = torch.rand(len(b), generator=g) < history_dropout
            h[drop] = 0.0
            _, loss = net(x, h if use_history else None, labels[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            run += loss.item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=ep, loss=f"{run / (s + 1):.3f}")
            if time.time() > deadline:
                stopped_early = True
                break
        if stopped_early:
            log(f"time budget reached in epoch {ep}; stopping lesion training early")
            break
    if bar is not None:
        bar.close()
    net.eval()
    return {"steps": step, "epochs_planned": epochs, "stopped_early": stopped_early}


@torch.no_grad()
def predict_lesion_logits(model: ScarWatchModel, images: np.ndarray, history: np.ndarray | None, *,
                          tta: int = 8, batch_size: int = 128, use_history: bool = True) -> np.ndarray:
    net = model.lesion
    net.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = eval_batch(images[i:i + batch_size], model.config.image_size)
        emb = sum(net.embed(dihedral(x, k)) for k in range(max(1, tta))) / max(1, tta)
        h = torch.from_numpy(history[i:i + batch_size]) if (history is not None and use_history) else None
        out.append(net.logit_from_embedding(emb, h).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


# --------------------------------------------------------------------------- feature model

def fit_feature_model(X: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, steps: int = 300) -> FeatureLogit:
    X = torch.from_numpy(X.astype(np.float32))
    y = torch.from_numpy(y.astype(np.float32))
    m = FeatureLogit(X.shape[1])
    m.mean.copy_(X.mean(0))
    m.std.copy_(X.std(0).clamp_min(1e-3))
    opt = torch.optim.LBFGS(m.parameters(), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        _, loss = m(X, y)
        loss = loss + l2 * (m.linear.weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    m.eval()
    return m


@torch.no_grad()
def feature_logits(m: FeatureLogit, X: np.ndarray) -> np.ndarray:
    return m(torch.from_numpy(X.astype(np.float32)))[0].numpy()


# --------------------------------------------------------------------------- reporting

def per_group_report(rows, y, p, mask) -> dict:
    """AUC overall, per source, per diagnosis (label: fraction flagged), per Fitzpatrick."""
    rep = {"n": int(mask.sum()), "auc": roc_auc(y[mask], p[mask])}
    for key in ("source", "fitzpatrick"):
        vals = sorted({rows[i][key] for i in np.nonzero(mask)[0]})
        for v in vals:
            m = mask & np.array([r[key] == v for r in rows])
            name = f"{key}={v or 'unknown'}"
            rep[name] = {"n": int(m.sum()), "auc": roc_auc(y[m], p[m]), "positives": int(y[m].sum())}
    return rep


def by_label(rows, y, p, mask, t) -> dict:
    out = {}
    for lab in sorted({rows[i]["label"] for i in np.nonzero(mask)[0]}):
        m = mask & np.array([r["label"] == lab for r in rows])
        out[lab] = {"n": int(m.sum()), "malignant": int(y[m].max()), "flagged": float((p[m] >= t).mean())}
    return out


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(default_data_dir()))
    ap.add_argument("--out", default="recurrence/checkpoints/recurrence-v1.pt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget; training stops early if hit")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--cache-size", type=int, default=128)
    ap.add_argument("--width", type=int, default=24)
    ap.add_argument("--tta", type=int, default=8)
    ap.add_argument("--no-history", action="store_true")
    ap.add_argument("--change-pairs", type=int, default=6000)
    ap.add_argument("--change-epochs", type=int, default=30)
    ap.add_argument("--feedback", default=None, help="JSONL of clinician-resolved regions (see MODEL_CARD.md)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="use the first N manifest rows (smoke runs)")
    ap.add_argument("--cache", default=None, help="optional .npz image cache for repeated experiments")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--final-fit", action="store_true",
                    help="(unused) kept for compatibility")
    return ap.parse_args(argv)


def _load(args) -> LesionSet:
    if args.cache and os.path.exists(args.cache):
        z = np.load(args.cache, allow_pickle=True)
        return LesionSet(rows=list(z["rows"]), images=z["images"], images_jpeg=z["images_jpeg"], masks=z["masks"],
                         features=z["features"], features_est=z["features_est"], history=z["history"],
                         labels=z["labels"], val=z["val"])
    data = load_lesion_set(Path(args.data), cache_size=args.cache_size, seed=args.seed, limit=args.limit,
                           progress=not args.no_progress)
    if args.cache:
        np.savez(args.cache, rows=np.array(data.rows, dtype=object), images=data.images,
                 images_jpeg=data.images_jpeg, masks=data.masks, features=data.features,
                 features_est=data.features_est, history=data.history, labels=data.labels, val=data.val)
    return data


def main(argv=None) -> dict:
    args = parse_args(argv)
    t0 = time.time()
    deadline = t0 + 60 * args.minutes
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    log = print
    data = _load(args)
    rows, y = data.rows, data.labels
    va = data.val.copy()
    tr = ~va
    if va.sum() == 0 or tr.sum() == 0:  # tiny smoke data: fall back to alternating split
        va = np.arange(len(rows)) % 4 == 0
        tr = ~va
    tr_idx, va_idx = np.nonzero(tr)[0], np.nonzero(va)[0]
    log(f"{len(rows)} images: {len(tr_idx)} train, {len(va_idx)} validation (group split)")

    cfg = ModelConfig(image_size=args.image_size, crop_size=args.image_size, width=args.width,
                      n_region=len(REGION_FEATURES), n_features=N_IMAGE_FEATURES + data.history.shape[1])
    model = ScarWatchModel(cfg)

    # reserve time for the rest of the pipeline
    lesion_deadline = deadline - 60 * min(4.0, 0.25 * args.minutes)
    train_info = train_lesion_cnn(model, data, tr_idx, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                  seed=args.seed, deadline=lesion_deadline, use_history=not args.no_history,
                                  progress=not args.no_progress, log=log)
    t_cnn = time.time() - t0
    hist = None if args.no_history else data.history
    z_cnn = predict_lesion_logits(model, data.images, hist, tta=args.tta)
    z_cnn_1 = predict_lesion_logits(model, data.images, hist, tta=1)
    z_cnn_nohist = predict_lesion_logits(model, data.images, None, tta=args.tta)

    # hand-made features + history (with the given masks and with estimated masks as extra rows)
    Xg = np.concatenate([data.features, data.history], 1)
    Xe = np.concatenate([data.features_est, data.history], 1)
    fm = fit_feature_model(np.concatenate([Xg[tr_idx], Xe[tr_idx]]), np.concatenate([y[tr_idx], y[tr_idx]]))
    z_feat = feature_logits(fm, Xg)
    z_feat_est = feature_logits(fm, Xe)
    model.features = fm

    # blend weight: fixed a priori (not tuned on validation) -> z = z_cnn + w * z_feat
    w = 0.5
    z_blend = z_cnn + w * z_feat
    cal = fit_platt(z_blend[va_idx], y[va_idx])
    p = apply_calibration(z_blend, cal)
    t_sens = threshold_for_sensitivity(y[va_idx], p[va_idx], SENSITIVITY_TARGET)
    t_spec = threshold_for_specificity(y[va_idx], p[va_idx], SPECIFICITY_TARGET)

    ablations = {
        "cnn_tta8+features (final)": roc_auc(y[va], z_blend[va]),
        "cnn_tta8": roc_auc(y[va], z_cnn[va]),
        "cnn_no_tta": roc_auc(y[va], z_cnn_1[va]),
        "cnn_tta8_without_history_input": roc_auc(y[va], z_cnn_nohist[va]),
        "features_logreg": roc_auc(y[va], z_feat[va]),
        "features_logreg_estimated_masks": roc_auc(y[va], z_feat_est[va]),
        "cnn+features_estimated_masks": roc_auc(y[va], (z_cnn + w * z_feat_est)[va]),
    }
    for src in ("isic", "pad", "ph2"):
        m = va & np.array([r["source"] == src for r in rows])
        ablations[f"isic/pad/ph2 breakdown: {src}"] = {k: roc_auc(y[m], v[m]) for k, v in
                                                       (("final", z_blend), ("cnn", z_cnn), ("features", z_feat))}
    lesion_metrics = {
        "validation": per_group_report(rows, y, p, va),
        "ece_validation": ece(y[va], p[va]),
        "ece_validation_uncalibrated": ece(y[va], 1 / (1 + np.exp(-z_blend[va]))),
        "thresholds": {"sensitivity_first": t_sens, "specificity_first": t_spec},
        "operating_points": {
            "sensitivity_first": dict(zip(("sensitivity", "specificity"), sens_spec(y[va], p[va], t_sens))),
            "specificity_first": dict(zip(("sensitivity", "specificity"), sens_spec(y[va], p[va], t_spec))),
        },
        "by_label_at_sensitivity_first": by_label(rows, y, p, va, t_sens),
        "ablations_auc": ablations,
        "train": train_info,
        "cnn_minutes": t_cnn / 60,
    }
    log(json.dumps({k: lesion_metrics[k] for k in ("ablations_auc",)}, indent=1, default=float))
    log(json.dumps(lesion_metrics["validation"], indent=1, default=float))

    # change head on synthesised pairs
    from .synth import train_change_head
    change_info = train_change_head(model, data, tr_idx, va_idx, n_pairs=args.change_pairs,
                                    epochs=args.change_epochs, seed=args.seed, feedback=args.feedback,
                                    progress=not args.no_progress, log=log)

    ckpt = {
        "model": model.state_dict(),
        "model_args": cfg.to_dict(),
        "preprocess": {
            "lesion": f"whole image -> PIL bilinear {args.cache_size}x{args.cache_size} (aspect squashed) -> "
                      f"torch bilinear {args.image_size}x{args.image_size} -> (x/255-0.5)/0.25; "
                      f"TTA mean embedding over {args.tta} dihedral transforms",
            "cache_size": args.cache_size, "image_size": args.image_size, "tta": args.tta,
            "mean": 0.5, "std": 0.25,
            "features": "recurrence.features.lesion_features(image, mask) ++ encode_answers(history)",
            "blend": {"cnn": 1.0, "features": w},
            "crop": change_info["crop"],
            "region_features": list(REGION_FEATURES),
        },
        "thresholds": change_info["thresholds"],
        "lesion_thresholds": lesion_metrics["thresholds"],
        "calibration": {"lesion": cal, "region": change_info["calibration"]},
        "data_hash": data_hash(Path(args.data), rows),
        "metrics": {"lesion": lesion_metrics, "change": change_info["metrics"]},
        "version": f"recurrence-{__version__}+{time.strftime('%Y%m%d')}-seed{args.seed}",
        "train_args": vars(args),
        "wall_minutes": (time.time() - t0) / 60,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {(time.time() - t0) / 60:.1f} min")
    return ckpt


if __name__ == "__main__":
    main()
