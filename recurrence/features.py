"""Hand-made colour / texture / shape features of one lesion image (numpy, OpenCV, scikit-image).

``lesion_features(image, mask=None)`` -> float32 (N_IMAGE_FEATURES,). When no mask is
given, the lesion is estimated: non-black pixels for background-zeroed cut-outs,
otherwise Otsu on a smoothed darkness channel, keeping the component nearest the centre.
"""
from __future__ import annotations

import cv2
import numpy as np
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

SIZE = 128

# dermoscopic colour prototypes in Lab (L 0-100, a, b): white, red, light brown, dark brown, blue-grey, black
_PROTOS = np.array([[85, 0, 5], [50, 45, 25], [60, 15, 30], [35, 15, 20], [45, 0, -10], [15, 0, 0]], np.float32)


def _resize(image: np.ndarray, mask: np.ndarray | None):
    img = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    m = None
    if mask is not None:
        m = cv2.resize((mask > 0).astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) > 0
    return img, m


def estimate_mask(img: np.ndarray) -> np.ndarray:
    """img uint8 (SIZE,SIZE,3) -> bool mask of the lesion."""
    black = img.max(axis=2) < 8
    if black.mean() > 0.05:  # background-zeroed cut-out
        m = ~black
        m = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
        if m.sum() > 20:
            return m
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    # darkness with a blue boost (lesions are dark/brown); smooth away hair
    g = cv2.medianBlur(gray, 5)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    r = np.hypot(yy - SIZE / 2, xx - SIZE / 2) / (SIZE / 2)
    inner = r < 0.95  # ignore dermoscope vignette corners when thresholding
    t, _ = cv2.threshold(g[inner].reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    m = (g <= t) & inner
    m = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, lab, stats, cent = cv2.connectedComponentsWithStats(m, 8)
    if n <= 1:
        return r < 0.5
    best, best_s = 0, -1e9
    for i in range(1, n):
        area = stats[i, cv2.CC_STAT_AREA]
        d = np.hypot(*(cent[i] - SIZE / 2)) / SIZE
        s = np.log(area + 1) - 4.0 * d
        if s > best_s:
            best, best_s = i, s
    m = lab == best
    m = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8)) > 0
    if m.sum() < 30:
        return r < 0.5
    return m


def _stats(x: np.ndarray) -> list[float]:
    if x.size == 0:
        return [0.0] * 4
    p10, p50, p90 = np.percentile(x, [10, 50, 90])
    return [float(x.mean()), float(x.std()), float(p90 - p10), float(p50)]


def lesion_features(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """image uint8 (H,W,3) RGB, mask optional (H,W) -> float32 (N_IMAGE_FEATURES,)"""
    img, m = _resize(image, mask)
    if m is None or m.sum() < 20:
        m = estimate_mask(img)
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    valid = img.max(axis=2) >= 8
    skin = (~m) & valid
    f: list[float] = []
    inside = lab[m]
    for c in range(3):
        f += _stats(inside[:, c])
    f += _stats(hsv[..., 1][m] / 255.0)
    if skin.sum() > 50:
        sk = lab[skin].mean(axis=0)
        f += list((inside.mean(axis=0) - sk).astype(float)) + [1.0]
    else:
        f += [0.0, 0.0, 0.0, 0.0]
    # colour prototype fractions (nearest prototype within 25 dE)
    d = np.linalg.norm(inside[:, None, :] - _PROTOS[None], axis=2)
    near = d.min(axis=1) < 25
    idx = d.argmin(axis=1)
    fr = [float(((idx == k) & near).mean()) for k in range(len(_PROTOS))]
    f += fr + [float(sum(x > 0.05 for x in fr))]
    # shape
    area = float(m.sum())
    cnts, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(cnts, key=cv2.contourArea) if cnts else None
    per = float(cv2.arcLength(c, True)) if c is not None else 0.0
    hull_area = float(cv2.contourArea(cv2.convexHull(c))) if c is not None and len(c) > 2 else area
    f += [area / SIZE**2, per**2 / (4 * np.pi * area + 1e-6) / 10.0, area / (hull_area + 1e-6)]
    ys, xs = np.nonzero(m)
    cy, cx = ys.mean(), xs.mean()
    # asymmetry: overlap with mask flipped about centroid (x and y)
    sh = np.float32([[1, 0, 0], [0, 1, 0]])
    sh[0, 2], sh[1, 2] = SIZE / 2 - cx, SIZE / 2 - cy
    mc = cv2.warpAffine(m.astype(np.uint8), sh, (SIZE, SIZE), flags=cv2.INTER_NEAREST)
    a1 = float((mc & mc[:, ::-1]).sum()) / (mc.sum() + 1e-6)
    a2 = float((mc & mc[::-1, :]).sum()) / (mc.sum() + 1e-6)
    f += [1 - a1, 1 - a2]
    # colour asymmetry: L and b means per half about the centroid
    lh = [lab[..., 0][m & (np.arange(SIZE)[None, :] < cx)], lab[..., 0][m & (np.arange(SIZE)[None, :] >= cx)],
          lab[..., 0][m & (np.arange(SIZE)[:, None] < cy)], lab[..., 0][m & (np.arange(SIZE)[:, None] >= cy)]]
    mu = [x.mean() if x.size else 0.0 for x in lh]
    f += [abs(mu[0] - mu[1]) / 20.0, abs(mu[2] - mu[3]) / 20.0]
    # texture: gradient magnitude and Laplacian energy inside / at border
    L = lab[..., 0]
    gx = cv2.Sobel(L, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(L, cv2.CV_32F, 0, 1, ksize=3)
    gm = np.hypot(gx, gy)
    lap = np.abs(cv2.Laplacian(L, cv2.CV_32F, ksize=3))
    border = (cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) - cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8))) > 0
    f += [float(gm[m].mean()) / 20, float(gm[m].std()) / 20, float(lap[m].mean()) / 20,
          float(gm[border & valid].mean()) / 20 if (border & valid).any() else 0.0]
    # whole-image colour (context, incl. modality cues)
    f += list((lab[valid].mean(axis=0) / 50.0).astype(float)) if valid.any() else [0.0, 0.0, 0.0]
    f += [float(valid.mean())]
    f += (_colour_histograms(lab, m) + _core_and_rim(lab, m) + _texture(img, m) + _structures(L, m)
          + _variegation(lab, m))
    out = np.asarray(f, np.float32)
    assert out.shape == (N_IMAGE_FEATURES,), out.shape
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _colour_histograms(lab: np.ndarray, m: np.ndarray) -> list[float]:
    """Share of lesion pixels in 8 bins of each of L, a*, b* (fixed ranges): 24 values."""
    out: list[float] = []
    for c, (lo, hi) in enumerate([(0, 100), (-10, 50), (-10, 50)]):
        h, _ = np.histogram(np.clip(lab[..., c][m], lo, hi - 1e-3), bins=8, range=(lo, hi))
        out += list(h / max(1, m.sum()))
    return out


def _core_and_rim(lab: np.ndarray, m: np.ndarray) -> list[float]:
    """Lab mean and spread of the lesion's inner half and its rim (how pigment is laid out): 12 values."""
    depth = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 5)
    half = 0.5 * depth.max()
    out: list[float] = []
    for sel in (depth > half, m & (depth <= half)):
        if sel.sum() > 5:
            out += list(lab[sel].mean(0) / 50) + list(lab[sel].std(0) / 20)
        else:
            out += [0.0] * 6
    return out


def _texture(img: np.ndarray, m: np.ndarray) -> list[float]:
    """Local binary patterns at radii 1 and 3 (20) and grey co-occurrence statistics at 1 and 3 px (8)."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    out: list[float] = []
    for radius in (1, 3):
        lbp = local_binary_pattern(grey, 8, radius, method="uniform")
        h, _ = np.histogram(lbp[m], bins=10, range=(0, 10))
        out += list(h / max(1, m.sum()))
    ys, xs = np.nonzero(m)
    box = (grey // 32)[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.uint8)
    glcm = graycomatrix(box, [1, 3], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=8, symmetric=True,
                        normed=True)
    for prop in ("contrast", "homogeneity", "energy", "correlation"):
        out += [float(v) for v in graycoprops(glcm, prop).mean(axis=1)]
    return out


def _structures(L: np.ndarray, m: np.ndarray) -> list[float]:
    """Dermoscopic structures: dark dots (black-hat at 5 and 9 px), network and streaks (Gabor energy
    and its orientation spread at wavelengths 4 and 8 px): 8 values."""
    out: list[float] = []
    for k in (5, 9):
        dots = cv2.morphologyEx(L, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        out += [float((dots[m] > 8).mean()), float(dots[m].mean() / 10)]
    for wavelength in (4.0, 8.0):
        energy = np.array([np.abs(cv2.filter2D(L, cv2.CV_32F, cv2.getGaborKernel(
            (15, 15), wavelength / 2, theta, wavelength, 0.5, 0)))[m].mean() for theta in np.arange(4) * np.pi / 4])
        out += [float(energy.mean() / 10), float(np.ptp(energy) / (energy.mean() + 1e-6))]
    return out


def _variegation(lab: np.ndarray, m: np.ndarray) -> list[float]:
    """Spread of the mean colours of 8-px blocks inside the lesion (several colours): 3 values."""
    blocks = cv2.resize(lab, (SIZE // 8, SIZE // 8), interpolation=cv2.INTER_AREA)
    inside = cv2.resize(m.astype(np.float32), (SIZE // 8, SIZE // 8), interpolation=cv2.INTER_AREA) > 0.8
    return list(blocks[inside].std(0) / 20) if inside.sum() > 3 else [0.0] * 3


#: Colour, shape and gradient statistics (the first block); then histograms, core/rim, texture, structures,
#: variegation.
N_BASIC_FEATURES = 42
N_IMAGE_FEATURES = N_BASIC_FEATURES + 24 + 12 + 28 + 8 + 3
