"""Synthetic baseline/follow-up pairs with known truth, for tests, calibration and validation.

The recipe follows the benchmark's (shared/bench/README.md) with wider capture
changes by default: a clinically relevant change (new lesion, growth,
darkening) or none, possibly a confounder (hair, shadow, glare, ink), and
always a capture change (homography, skin stretch, exposure, gamma, white
balance, illumination gradient, blur, noise, JPEG), black outside the field.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

from ._imageutil import _check_rgb, _field_mask
from .lesion import segment_lesion

KINDS = ("none", "new_lesion", "growth", "darkening")
CONFOUNDERS = ("hair", "shadow", "glare", "ink")


@dataclass
class SynthPair:
    """A generated pair; see :func:`make_pair`.

    Attributes
    ----------
    reference_image, moving_image : ndarray, shape (M, N, 3), uint8
        Baseline and follow-up.
    homography : ndarray, shape (3, 3), float64
        True follow-up (x, y, 1) -> baseline pixel mapping.
    change_mask : ndarray, shape (M, N), bool
        Changed baseline pixels (all False without a change).
    kind : str
        One of ``KINDS``.
    confounder : str or None
        One of ``CONFOUNDERS``.
    params : dict
        The drawn parameters.
    """

    reference_image: np.ndarray
    moving_image: np.ndarray
    homography: np.ndarray
    change_mask: np.ndarray
    kind: str
    confounder: str | None
    params: dict = field(default_factory=dict)


def _feather(mask, sigma=1.5):
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)[..., None]


def _blend(image, colour_image, alpha):
    out = image.astype(np.float32) * (1 - alpha) + colour_image.astype(np.float32) * alpha
    return np.clip(out, 0, 255).astype(np.uint8)


def _donor_blob(rng, diameter, colour=None):
    """A textured, irregular blob (brown unless `colour`, RGB) used when no donor lesion is given."""
    size = int(diameter * 1.4) + 4
    yy, xx = np.mgrid[:size, :size] - size / 2
    angle = np.arctan2(yy, xx)
    radius = diameter / 2 * (1 + 0.15 * np.sin(3 * angle + rng.uniform(0, 6)))
    mask = np.hypot(xx, yy) < radius
    base = (np.array(rng.uniform([70, 40, 25], [130, 85, 60]), np.float32) if colour is None
            else np.asarray(colour, np.float32))
    tex = cv2.GaussianBlur(rng.normal(0, 18, (size, size)).astype(np.float32), (0, 0), 1.5)
    patch = np.clip(base[None, None] + tex[..., None], 0, 255).astype(np.uint8)
    return patch, mask


def _add_new_lesion(image, lesion, field, rng, donor, unit=1.0):
    """Paste a lesion 18-50 px across, 10-140 px from `lesion` (pixel figures times `unit`)."""
    h, w = lesion.shape
    diameter = rng.uniform(18, 50) * unit
    if callable(donor):
        donor = donor(rng, diameter)
    if donor is not None:
        d_img, d_mask = donor
        ys, xs = np.nonzero(d_mask)
        crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        d_img, d_mask = d_img[crop], d_mask[crop]
        f = diameter / max(d_mask.shape)
        size = (max(3, round(d_mask.shape[1] * f)), max(3, round(d_mask.shape[0] * f)))
        patch = cv2.resize(d_img, size, interpolation=cv2.INTER_AREA)
        pmask = cv2.resize(d_mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    else:
        patch, pmask = _donor_blob(rng, diameter)
    ph, pw = pmask.shape
    dist = cv2.distanceTransform((~lesion).astype(np.uint8), cv2.DIST_L2, 5)
    inner = cv2.erode(field.astype(np.uint8), np.ones((31, 31), np.uint8)) > 0
    margin = max(ph, pw)
    inner[:margin], inner[-margin:], inner[:, :margin], inner[:, -margin:] = False, False, False, False
    spots = np.argwhere(inner & (dist >= 10 * unit + diameter / 2) & (dist <= 140 * unit + diameter / 2))
    if len(spots) == 0:
        spots = np.argwhere(inner & ~lesion)
    if len(spots) == 0:
        raise ValueError("no room for a new lesion in this image; pass a larger image.")
    cy, cx = spots[rng.integers(len(spots))]
    y0, x0 = cy - ph // 2, cx - pw // 2
    canvas = np.zeros((h, w), bool)
    canvas[y0:y0 + ph, x0:x0 + pw] = pmask
    patch_full = np.zeros_like(image)
    patch_full[y0:y0 + ph, x0:x0 + pw] = patch
    out = _blend(image, patch_full, _feather(canvas, 1.0) * rng.uniform(0.85, 1.0))
    return out, canvas, {"diameter_px": round(float(diameter), 1)}


def _add_growth(image, lesion, rng):
    scale = rng.uniform(1.1, 1.35)
    ys, xs = np.nonzero(lesion)
    cx, cy = xs.mean(), ys.mean()
    m = np.array([[scale, 0, cx * (1 - scale)], [0, scale, cy * (1 - scale)]])
    h, w = lesion.shape
    grown_img = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    grown = cv2.warpAffine(lesion.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
    out = _blend(image, grown_img, _feather(grown, 2.0))
    changed = grown & ~lesion
    return out, changed, {"scale": round(float(scale), 3),
                          "area_gain": round(float(changed.sum() / max(lesion.sum(), 1)), 3)}


def _add_darkening(image, lesion, rng):
    h, w = lesion.shape
    inner = cv2.erode(lesion.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    if inner.sum() < 50:
        inner = lesion
    ys, xs = np.nonzero(inner)
    i = rng.integers(len(xs))
    radius = np.sqrt(lesion.sum() / np.pi) * rng.uniform(0.25, 0.5)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(radius / 3, 2))
    yy, xx = np.mgrid[:h, :w]
    blob = (np.hypot(xx - xs[i], yy - ys[i]) / radius + noise / (noise.std() + 1e-6) * 0.35) < 1
    blob &= lesion
    target = np.array(rng.uniform([55, 60, 75], [95, 100, 120]), np.float32)
    lum = image.astype(np.float32).mean(axis=2, keepdims=True)
    shade = target[None, None] * (lum / max(float(lum[blob].mean()) if blob.any() else 1.0, 1.0))
    out = _blend(image, np.clip(shade, 0, 255), _feather(blob, 1.5) * rng.uniform(0.6, 0.85))
    return out, blob, {"area_px": int(blob.sum())}


def _curve(rng, h, w, length):
    p0 = rng.uniform([0, 0], [w, h])
    angle = rng.uniform(0, np.pi)
    p2 = p0 + length * np.array([np.cos(angle), np.sin(angle)])
    p1 = (p0 + p2) / 2 + rng.normal(0, length / 5, 2)
    t = np.linspace(0, 1, 60)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    return np.round(pts * 16).astype(np.int32)


def _add_confounder(image, kind, rng):
    h, w = image.shape[:2]
    out = image.copy()
    if kind == "hair":
        for _ in range(rng.integers(3, 12)):
            shade = int(rng.uniform(15, 70))
            cv2.polylines(out, [_curve(rng, h, w, rng.uniform(0.2, 0.8) * max(h, w))], False,
                          (shade, shade * 0.8, shade * 0.7), int(rng.integers(1, 3)), cv2.LINE_AA, 4)
    elif kind == "ink":
        layer = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(1, 3)):
            cv2.polylines(layer, [_curve(rng, h, w, rng.uniform(60, 250))], False, 255,
                          int(rng.integers(2, 6)), cv2.LINE_AA, 4)
        colour = np.array(rng.uniform([80, 30, 110], [140, 80, 190]), np.uint8)
        out = _blend(out, np.broadcast_to(colour, out.shape), layer[..., None] / 255.0 * rng.uniform(0.6, 0.9))
    elif kind == "shadow":
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[:h, :w]
        d = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle) - rng.uniform(-0.3, 0.3) * w
        soft = rng.uniform(20, 80)
        depth = rng.uniform(0.25, 0.5)
        gain = 1 - depth / (1 + np.exp(-d / soft))
        out = np.clip(out * gain[..., None], 0, 255).astype(np.uint8)
    elif kind == "glare":
        alpha = np.zeros((h, w), np.float32)
        yy, xx = np.mgrid[:h, :w]
        for _ in range(rng.integers(1, 5)):
            cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
            sx, sy = rng.uniform(4, 25, 2)
            alpha = np.maximum(alpha, np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2)))
        out = _blend(out, np.full_like(out, 255), alpha[..., None] * rng.uniform(0.7, 1.0))
    else:
        raise ValueError(f"unknown confounder {kind!r}; use one of {CONFOUNDERS}.")
    return out


def _camera(rng, h, w, rotation, scale_range, max_shift, perspective):
    theta = np.deg2rad(rng.uniform(-rotation, rotation))
    s = np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1])))
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    shift = rng.uniform(-max_shift, max_shift, 2) * [w, h]
    to_centre = np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1]])
    back = np.array([[1, 0, c[0] + shift[0]], [0, 1, c[1] + shift[1]], [0, 0, 1]])
    rot = np.array([[s * np.cos(theta), -s * np.sin(theta), 0],
                    [s * np.sin(theta), s * np.cos(theta), 0], [0, 0, 1]])
    p = rng.uniform(-perspective, perspective, 2) / max(h, w)
    tilt = np.array([[1, 0, 0], [0, 1, 0], [p[0], p[1], 1]])
    b2f = back @ rot @ tilt @ to_centre
    return b2f / b2f[2, 2], {"rotation_deg": round(float(np.rad2deg(theta)), 2), "scale": round(float(s), 3)}


def _stretch(image, rng, amplitude):
    h, w = image.shape[:2]
    field = [cv2.resize(rng.normal(0, 1, (4, 4)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC) for _ in range(2)]
    peak = max(np.abs(field[0]).max(), np.abs(field[1]).max(), 1e-6)
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    dx, dy = (f * (amplitude / peak) for f in field)
    return cv2.remap(image, xx + dx, yy + dy, cv2.INTER_LINEAR, borderValue=0)


def _photometric(image, rng, params):
    h, w = image.shape[:2]
    img = image.astype(np.float32) / 255
    gain = rng.uniform(0.75, 1.25)
    gamma = rng.uniform(0.8, 1.25)
    wb = rng.uniform(0.88, 1.12, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    ramp = ((xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle))
    light = 1 + rng.uniform(0, 0.35) * ramp
    img = np.clip(img * gain * wb * light[..., None], 0, 1) ** gamma
    blur = rng.uniform(0, 1.5)
    if blur > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    img = img + rng.normal(0, rng.uniform(0.002, 0.015), img.shape).astype(np.float32)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    quality = int(rng.integers(60, 96))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    params.update(blur_sigma=round(float(blur), 2), jpeg_quality=quality,
                  gain=round(float(gain), 3), gamma=round(float(gamma), 3))
    return out


def make_pair(image, *, lesion_mask=None, kind="none", confounder=None, rng=None,
              donor=None, rotation=45.0, scale_range=(0.6, 1.6), max_shift=0.08,
              perspective=0.25, stretch_px=1.5):
    """Generate a baseline/follow-up pair with known truth from one photo.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
        The baseline photo.
    lesion_mask : ndarray, shape (M, N), bool, optional
        The baseline lesion; segmented when omitted.
    kind : {'none', 'new_lesion', 'growth', 'darkening'}
        Clinically relevant change to make.
    confounder : {None, 'hair', 'shadow', 'glare', 'ink'}
        Irrelevant change to add to the follow-up.
    rng : numpy.random.Generator, optional
        Source of all random draws (seed it for reproducible pairs).
    donor : tuple of (ndarray (P, Q, 3) uint8, ndarray (P, Q) bool), optional
        Lesion image and mask pasted as the new lesion; a synthetic brown blob
        when omitted.
    rotation : float
        Largest rotation, degrees either way.
    scale_range : tuple of float
        Smallest and largest zoom of the follow-up.
    max_shift : float
        Largest shift, as a share of the image size.
    perspective : float
        Largest perspective tilt (projective terms times the long side).
    stretch_px : float
        Largest skin-stretch displacement, pixels.

    Returns
    -------
    pair : SynthPair
    """
    image = _check_rgb(image, "image")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}.")
    rng = np.random.default_rng() if rng is None else rng
    h, w = image.shape[:2]
    field = _field_mask(image)
    lesion = segment_lesion(image) if lesion_mask is None else np.asarray(lesion_mask).astype(bool)
    if kind in ("growth", "darkening") and lesion.sum() < 30:
        raise ValueError(f"kind {kind!r} needs a visible lesion; pass lesion_mask or another image.")
    changed, params = image, {}
    change_mask = np.zeros((h, w), bool)
    if kind == "new_lesion":
        changed, change_mask, params = _add_new_lesion(image, lesion, field, rng, donor)
    elif kind == "growth":
        changed, change_mask, params = _add_growth(image, lesion, rng)
    elif kind == "darkening":
        changed, change_mask, params = _add_darkening(image, lesion, rng)
    change_mask &= field
    if confounder is not None:
        changed = _add_confounder(changed, confounder, rng)
    b2f, capture = _camera(rng, h, w, rotation, scale_range, max_shift, perspective)
    follow = cv2.warpPerspective(changed, b2f, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    stretch = rng.uniform(0, stretch_px)
    follow = _stretch(follow, rng, stretch)
    capture["stretch_px"] = round(float(stretch), 2)
    follow = _photometric(follow, rng, capture)
    truth = np.linalg.inv(b2f)
    params["capture"] = capture
    return SynthPair(image, follow, truth / truth[2, 2], change_mask, kind, confounder, params)
