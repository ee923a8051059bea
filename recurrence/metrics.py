"""Small numpy metrics and calibration helpers (no sklearn)."""
from __future__ import annotations

import numpy as np


def roc_auc(y, s) -> float:
    """Mann-Whitney AUC with ties counted half; nan when one class is absent."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, np.float64)
    n1, n0 = y.sum(), (~y).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    ss = s[order]
    i = 0
    while i < len(ss):
        j = i
        while j + 1 < len(ss) and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def sigmoid(z):
    z = np.clip(np.asarray(z, np.float64), -500, 500)
    return 1.0 / (1.0 + np.exp(-z))


def fit_platt(logits, y, iters: int = 500) -> dict:
    """Temperature + bias on logits by Newton steps on the log loss: p = sigmoid(a*z + b)."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(y, np.float64)
    a, b = 1.0, 0.0
    for _ in range(iters):
        p = sigmoid(a * z + b)
        w = p * (1 - p) + 1e-9
        ga, gb = ((p - y) * z).sum(), (p - y).sum()
        haa, hab, hbb = (w * z * z).sum() + 1e-6, (w * z).sum(), w.sum() + 1e-6
        det = haa * hbb - hab * hab
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return {"method": "platt", "a": float(a), "b": float(b)}


def apply_calibration(logits, cal: dict | None):
    z = np.asarray(logits, np.float64)
    if not cal:
        return sigmoid(z)
    return sigmoid(cal["a"] * z + cal["b"])


def ece(y, p, bins: int = 10) -> float:
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    e = 0.0
    for i in range(bins):
        m = (p >= edges[i]) & ((p < edges[i + 1]) if i < bins - 1 else (p <= 1))
        if m.any():
            e += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(e)


def threshold_for_sensitivity(y, p, target: float) -> float:
    """Largest threshold t with sensitivity(p >= t) >= target."""
    y = np.asarray(y).astype(bool)
    pos = np.sort(np.asarray(p)[y])[::-1]
    if len(pos) == 0:
        return 0.5
    k = int(np.ceil(target * len(pos))) - 1
    return float(pos[min(max(k, 0), len(pos) - 1)])


def threshold_for_specificity(y, p, target: float) -> float:
    """Smallest threshold t with specificity(p < t) >= target."""
    y = np.asarray(y).astype(bool)
    neg = np.sort(np.asarray(p)[~y])
    if len(neg) == 0:
        return 0.5
    k = int(np.ceil(target * len(neg))) - 1
    return float(np.nextafter(neg[min(max(k, 0), len(neg) - 1)], 2.0))


def sens_spec(y, p, t: float) -> tuple[float, float]:
    y = np.asarray(y).astype(bool)
    f = np.asarray(p) >= t
    sens = float(f[y].mean()) if y.any() else float("nan")
    spec = float((~f[~y]).mean()) if (~y).any() else float("nan")
    return sens, spec
