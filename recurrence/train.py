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
from .checkpoint import save_checkpoint
from .data import DIAGNOSIS_GROUPS, default_data_dir, data_hash, diagnosis_indices, load_lesion_set, LesionSet
from .encoding import REGION_FEATURES
from .features import N_BASIC_FEATURES, N_IMAGE_FEATURES
from .metrics import (apply_calibration, ece, fit_platt, roc_auc, sens_spec, threshold_for_sensitivity,
                      threshold_for_specificity)
from .model import ModelConfig, ScarWatchModel, FeatureLogit, LesionNet

SENSITIVITY_TARGET = 0.95
SPECIFICITY_TARGET = 0.90


# --------------------------------------------------------------------------- lesion CNN

def train_lesion_cnn(net: LesionNet, data: LesionSet, idx: np.ndarray, *, epochs: int | None,
                     batch_size: int, lr: float, seed: int, deadline: float, max_epochs: int = 40,
                     history_dropout: float = 0.3, use_history: bool = True, diagnosis_weight: float = 0.5,
                     progress: bool = True, log=print) -> dict:
    """AdamW, one warm-up epoch then cosine decay. The loss adds ``diagnosis_weight`` times the auxiliary
    diagnosis-group cross-entropy when the model has that head. ``epochs=None`` ('auto'): after the warm-up
    epoch the number of epochs is set from its duration so that training ends before ``deadline`` (the chosen
    number is returned and stored in the checkpoint; pass it as --epochs to reproduce the run exactly)."""
    cfg = net.config
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    steps_per_epoch = max(1, len(idx) // batch_size)
    plan = {"epochs": epochs if epochs is not None else max_epochs}

    def lr_at(step):
        warm = steps_per_epoch
        if step < warm:
            return (step + 1) / warm
        total = max(plan["epochs"] * steps_per_epoch - warm, 1)
        t = min((step - warm) / total, 1.0)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    labels = torch.from_numpy(data.labels)
    diagnoses = torch.from_numpy(diagnosis_indices(data.rows))
    hist = torch.from_numpy(data.history)
    step, stopped_early = 0, False
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=plan["epochs"] * steps_per_epoch, desc="lesion CNN", unit="step")
    net.train()
    ep = 0
    while ep < plan["epochs"]:
        t_ep = time.time()
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
            _, loss = net(x, h if use_history else None, labels[b], diagnoses[b], diagnosis_weight)
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
        if ep == 0 and epochs is None:
            left = deadline - time.time()
            plan["epochs"] = int(max(2, min(max_epochs, 1 + 0.92 * left // max(time.time() - t_ep, 1e-3))))
            log(f"epoch 0 took {time.time() - t_ep:.0f} s; planning {plan['epochs']} epochs "
                f"(reproduce with --epochs {plan['epochs']})")
            if bar is not None:
                bar.total = plan["epochs"] * steps_per_epoch
        if stopped_early:
            log(f"time budget reached in epoch {ep}; stopping lesion training early")
            break
        ep += 1
    if bar is not None:
        bar.close()
    net.eval()
    return {"steps": step, "epochs": plan["epochs"], "epochs_auto": epochs is None, "stopped_early": stopped_early}


@torch.no_grad()
def lesion_embeddings(net: LesionNet, images: np.ndarray, *, tta: int = 8, batch_size: int = 128):
    """-> (embedding averaged over ``tta`` dihedral views, embedding of the plain view)."""
    net.eval()
    mean, plain = [], []
    for i in range(0, len(images), batch_size):
        x = eval_batch(images[i:i + batch_size], net.config.image_size)
        embs = [net.embed(dihedral(x, k)) for k in range(max(1, tta))]
        mean.append(sum(embs) / len(embs))
        plain.append(embs[0])
    return torch.cat(mean), torch.cat(plain)


@torch.no_grad()
def lesion_logits(net: LesionNet, emb: torch.Tensor, history: np.ndarray | None) -> np.ndarray:
    h = torch.from_numpy(history) if history is not None else None
    return net.logit_from_embedding(emb, h).numpy()


# --------------------------------------------------------------------------- feature model

def fit_feature_model(X: np.ndarray, y: np.ndarray, *, hidden: int = 64, members: int = 5, epochs: int = 200,
                      weight_decay: float = 0.1, l2: float = 1e-3, seed: int = 0) -> FeatureLogit:
    """MLP ensemble (hidden > 0; AdamW, fixed epochs, seeded) or L2 logistic regression (hidden == 0, LBFGS)."""
    X = torch.from_numpy(X.astype(np.float32))
    y = torch.from_numpy(y.astype(np.float32))
    torch.manual_seed(seed)
    m = FeatureLogit(X.shape[1], hidden, members)
    m.mean.copy_(X.mean(0))
    m.std.copy_(X.std(0).clamp_min(1e-3))
    if hidden == 0:
        opt = torch.optim.LBFGS(m.parameters(), lr=0.5, max_iter=300, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            _, loss = m(X, y)
            loss = loss + l2 * (m.nets[0].weight ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    else:
        g = torch.Generator().manual_seed(seed)
        for k in range(members):
            opt = torch.optim.AdamW(m.nets[k].parameters(), lr=1e-2, weight_decay=weight_decay)
            m.train()
            for _ in range(epochs):
                perm = torch.randperm(len(y), generator=g)
                for i in range(0, len(perm), 128):
                    b = perm[i:i + 128]
                    _, loss = m(X[b], y[b], member=k)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    m.eval()
    return m


@torch.no_grad()
def feature_logits(m: FeatureLogit, X: np.ndarray) -> np.ndarray:
    return m(torch.from_numpy(X.astype(np.float32)))[0].numpy()


def choose_blend(z_cnn, z_feat, y, va_idx, rows, grid=np.linspace(0, 1, 11), folds: int = 5):
    """Share of the (std-scaled) CNN logit in the blend: argmax validation AUC, and the cross-fitted AUC."""
    import hashlib
    zc = z_cnn[va_idx] / (np.std(z_cnn[va_idx]) + 1e-6)
    zf = z_feat[va_idx] / (np.std(z_feat[va_idx]) + 1e-6)
    yv = y[va_idx]
    fold = np.array([int(hashlib.md5(rows[i]["group"].encode()).hexdigest(), 16) % folds for i in va_idx])

    def best(m):
        return max(grid, key=lambda a: (roc_auc(yv[m], a * zc[m] + (1 - a) * zf[m]), -abs(a - 0.5)))

    cross = np.zeros(len(va_idx))
    for k in range(folds):
        a = best(fold != k)
        cross[fold == k] = a * zc[fold == k] + (1 - a) * zf[fold == k]
    return float(best(np.ones(len(va_idx), bool))), roc_auc(yv, cross)


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
    ap.add_argument("--epochs", type=int, default=None, help="default: auto from the time budget")
    ap.add_argument("--max-epochs", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--image-size", type=int, default=80)
    ap.add_argument("--cache-size", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--tta", type=int, default=8)
    ap.add_argument("--cnn-members", type=int, default=2,
                    help="lesion CNNs trained with seeds seed, seed+1, ...; the malignancy score averages them")
    ap.add_argument("--feature-weight-decay", type=float, default=0.1,
                    help="AdamW weight decay of the feature MLPs (see MODEL_CARD.md: 1.0 wins a "
                         "cross-validation inside the training split but not the blend on validation)")
    ap.add_argument("--diagnosis-weight", type=float, default=0.5,
                    help="weight of the auxiliary diagnosis-group loss of the lesion CNN (0 = no such head)")
    ap.add_argument("--no-history", action="store_true")
    ap.add_argument("--change-pairs", type=int, default=4000)
    ap.add_argument("--change-epochs", type=int, default=30)
    ap.add_argument("--feedback", default=None, help="JSONL of clinician-resolved regions (see MODEL_CARD.md)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="use the first N manifest rows (smoke runs)")
    ap.add_argument("--cache", default=None, help="optional .npz image cache for repeated experiments")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def _load(args) -> LesionSet:
    if args.cache and os.path.exists(args.cache):
        z = np.load(args.cache, allow_pickle=True)
        return LesionSet(rows=list(z["rows"]), images=z["images"], images_jpeg=z["images_jpeg"], masks=z["masks"],
                         features=z["features"], features_est=z["features_est"], history=z["history"],
                         patient=z["patient"], labels=z["labels"], val=z["val"])
    data = load_lesion_set(Path(args.data), cache_size=args.cache_size, seed=args.seed, limit=args.limit,
                           progress=not args.no_progress)
    if args.cache:
        np.savez(args.cache, rows=np.array(data.rows, dtype=object), images=data.images,
                 images_jpeg=data.images_jpeg, masks=data.masks, features=data.features,
                 features_est=data.features_est, history=data.history, patient=data.patient, labels=data.labels,
                 val=data.val)
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
                      n_region=len(REGION_FEATURES), n_features=N_IMAGE_FEATURES + data.history.shape[1] + data.patient.shape[1],
                      n_diagnoses=len(DIAGNOSIS_GROUPS) if args.diagnosis_weight > 0 else 0,
                      cnn_members=args.cnn_members)
    model = ScarWatchModel(cfg)

    # reserve time for the rest of the pipeline; each CNN gets an equal share of what is left
    lesion_deadline = deadline - 60 * min(6.0, 0.25 * args.minutes)
    nets = model.lesion_nets
    train_members = []
    for k, net in enumerate(nets):
        member_deadline = time.time() + (lesion_deadline - time.time()) / (len(nets) - k)
        train_members.append(train_lesion_cnn(
            net, data, tr_idx, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed + k,
            deadline=member_deadline, max_epochs=args.max_epochs, use_history=not args.no_history,
            diagnosis_weight=args.diagnosis_weight, progress=not args.no_progress, log=log))
    train_info = {**train_members[0], "members": train_members}
    t_cnn = time.time() - t0
    hist = None if args.no_history else data.history
    z_members, z_members_1, z_members_nohist = [], [], []
    for net in nets:
        emb_tta, emb_plain = lesion_embeddings(net, data.images, tta=args.tta)
        z_members.append(lesion_logits(net, emb_tta, hist))
        z_members_1.append(lesion_logits(net, emb_plain, hist))
        z_members_nohist.append(lesion_logits(net, emb_tta, None))
    z_cnn, z_cnn_1, z_cnn_nohist = (np.mean(z, axis=0) for z in (z_members, z_members_1, z_members_nohist))

    # hand-made features + answers + patient facts (with the given masks and with estimated masks as extra rows)
    Xg = np.concatenate([data.features, data.history, data.patient], 1)
    Xe = np.concatenate([data.features_est, data.history, data.patient], 1)
    X_fit = np.concatenate([Xg[tr_idx], Xe[tr_idx]])
    y_fit = np.concatenate([y[tr_idx], y[tr_idx]])

    def feature_mlp(columns):
        m = fit_feature_model(X_fit[:, columns], y_fit, hidden=cfg.feature_hidden, members=cfg.feature_members,
                              epochs=100, weight_decay=args.feature_weight_decay, seed=args.seed)
        return m, feature_logits(m, Xg[:, columns])

    fm, z_feat = feature_mlp(slice(None))
    z_feat_est = feature_logits(fm, Xe)
    model.features = fm
    z_feat_lr = feature_logits(fit_feature_model(X_fit, y_fit, hidden=0), Xg)
    # what the patient facts and the texture/structure features beyond the first 42 buy
    n_img, n_hist = data.features.shape[1], data.history.shape[1]
    z_feat_no_patient = feature_mlp(slice(0, n_img + n_hist))[1]
    z_feat_basic = feature_mlp(np.r_[0:N_BASIC_FEATURES, n_img:Xg.shape[1]])[1]

    # blend: z = a * z_cnn + w * z_feat with each logit scaled by its validation std (label-free); the mixing
    # share is picked on validation, and its honest AUC is cross-fitted (picked on 4/5 of the validation
    # groups, applied to the 5th)
    share, share_cv_auc = choose_blend(z_cnn, z_feat, y, va_idx, rows)
    s_cnn, s_feat = float(np.std(z_cnn[va_idx]) + 1e-6), float(np.std(z_feat[va_idx]) + 1e-6)
    blend = {"cnn": share / s_cnn, "features": (1 - share) / s_feat}
    z_blend = blend["cnn"] * z_cnn + blend["features"] * z_feat
    cal = fit_platt(z_blend[va_idx], y[va_idx])
    p = apply_calibration(z_blend, cal)
    t_sens = threshold_for_sensitivity(y[va_idx], p[va_idx], SENSITIVITY_TARGET)
    t_spec = threshold_for_specificity(y[va_idx], p[va_idx], SPECIFICITY_TARGET)

    ablations = {
        "cnn_tta8+features (final, share picked on validation)": roc_auc(y[va], z_blend[va]),
        "cnn_tta8+features (cross-fitted share, honest)": share_cv_auc,
        "cnn_share_of_blend": share,
        "cnn_tta8": roc_auc(y[va], z_cnn[va]),
        "cnn_tta8_first_member_only": roc_auc(y[va], z_members[0][va]),
        "cnn_no_tta": roc_auc(y[va], z_cnn_1[va]),
        "cnn_tta8_without_history_input": roc_auc(y[va], z_cnn_nohist[va]),
        "features_mlp_ensemble": roc_auc(y[va], z_feat[va]),
        "features_mlp_ensemble_estimated_masks": roc_auc(y[va], z_feat_est[va]),
        "features_mlp_without_patient_facts": roc_auc(y[va], z_feat_no_patient[va]),
        "features_mlp_basic_42_features_only": roc_auc(y[va], z_feat_basic[va]),
        "features_logreg": roc_auc(y[va], z_feat_lr[va]),
        "cnn+features_estimated_masks": roc_auc(y[va], (blend["cnn"] * z_cnn + blend["features"] * z_feat_est)[va]),
    }
    for src in ("isic", "pad", "ph2"):
        m = va & np.array([r["source"] == src for r in rows])
        ablations[f"isic/pad/ph2 breakdown: {src}"] = {k: roc_auc(y[m], v[m]) for k, v in
                                                       (("final", z_blend), ("cnn", z_cnn), ("features_mlp", z_feat),
                                                        ("features_mlp_without_patient_facts", z_feat_no_patient),
                                                        ("features_logreg", z_feat_lr))}
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
                                    data_dir=Path(args.data),
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
            "features": "recurrence.features.lesion_features(image, mask) ++ encode_answers(history) "
                        "++ encode_patient(history: age, sex, region) -> "
                        f"{cfg.feature_members} MLPs (hidden {cfg.feature_hidden}), mean logit",
            "blend": blend,
            "crop": change_info["crop"],
            "region_features": list(REGION_FEATURES),
        },
        "thresholds": change_info["thresholds"],
        "lesion_thresholds": lesion_metrics["thresholds"],
        "calibration": {"lesion": cal, "region": change_info["calibration"]},
        "diagnosis_groups": {name: list(labels) for name, labels in DIAGNOSIS_GROUPS.items()},
        "data_hash": data_hash(Path(args.data), rows),
        "metrics": {"lesion": lesion_metrics, "change": change_info["metrics"]},
        "version": f"recurrence-{__version__}+{time.strftime('%Y%m%d')}-seed{args.seed}",
        "train_args": vars(args),
        "wall_minutes": (time.time() - t0) / 60,
    }
    out = save_checkpoint(ckpt, args.out)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {(time.time() - t0) / 60:.1f} min")
    return ckpt


if __name__ == "__main__":
    main()
