"""Phone follow-up pairs with known truth: the bench recipe's changes, photographed as a patient does.

The baseline is a real phone photo of skin, sometimes with the body part's edge and a background
in the frame and a reference card lying on the skin. The follow-up shows the same skin after a
clinically relevant change or none (new lesion, pigmented or a pink papule; growth; darkening),
maybe a confounder that must not count (hair, the phone's or hand's shadow, flash glare, a
surgical-ink circle, cream, a skin fold), photographed again: 0.5-2x the distance, tilt up to 40
degrees, any rotation, other framing with another background, the card moved, gone or new, a
second object in the frame, flash, white balance, exposure, motion blur, noise and JPEG.
"""

import cv2
import numpy as np

from ._imageutil import _check_rgb
from .synth import KINDS, SynthPair, _add_darkening, _add_growth, _add_new_lesion, _blend, _donor_blob

PHONE_CONFOUNDERS = ("hair", "shadow", "flash", "ink", "cream", "fold")
BACKGROUNDS = ("drape", "wood", "fabric", "paper", "dark")
#: The bench recipe's pixel figures (lesion sizes, distances) are for a 765-px-long dermoscopy photo.
_BENCH_SIDE = 765.0


def _background(kind, rng, h, w):
    """A procedural RGB background, shape (h, w, 3), uint8: what is around a body part at home or in clinic."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    low = cv2.resize(rng.normal(0, 1, (6, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.0)
    if kind == "drape":  # surgical blue or green, with folds
        base = np.array([(60, 110, 150), (70, 130, 110), (90, 140, 170)][rng.integers(3)], np.float32)
        shade = 1 + 0.18 * low + 0.1 * np.sin(xx / rng.uniform(8, 30) + 3 * low)
    elif kind == "wood":  # brown grain: as skin-coloured as a background gets
        base = np.array(rng.uniform([120, 75, 40], [190, 130, 85]), np.float32)
        angle = rng.uniform(0, np.pi)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        shade = 1 + 0.12 * np.sin(u / rng.uniform(3, 9) + 4 * low) + 0.05 * fine
    elif kind == "fabric":  # a checked or striped shirt
        colours = rng.uniform(30, 230, (2, 3)).astype(np.float32)
        period = rng.uniform(8, 40)
        check = ((xx // period + (yy // period) * rng.integers(0, 2)) % 2)[..., None]
        base_img = colours[0] * (1 - check) + colours[1] * check
        return np.clip(base_img * (1 + 0.08 * low + 0.06 * fine)[..., None], 0, 255).astype(np.uint8)
    elif kind == "paper":  # a white sheet or towel
        base = np.array(rng.uniform([215, 215, 210], [250, 250, 250]), np.float32)
        shade = 1 + 0.05 * low + 0.02 * fine
    elif kind == "dark":  # dark clothing
        base = np.array(rng.uniform([15, 15, 20], [60, 60, 70]), np.float32)
        shade = 1 + 0.2 * low + 0.1 * fine
    else:
        raise ValueError(f"unknown background {kind!r}; use one of {BACKGROUNDS}.")
    return np.clip(base[None, None] * shade[..., None], 0, 255).astype(np.uint8)


def _body_region(rng, h, w):
    """Bool mask of the body part: the frame minus a curved strip along one side (10-35 % of it)."""
    side = rng.integers(4)
    depth = rng.uniform(0.1, 0.35)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    coord = [xx / w, 1 - xx / w, yy / h, 1 - yy / h][side]
    along = [yy / h, yy / h, xx / w, xx / w][side]
    edge = depth + 0.06 * np.sin(along * rng.uniform(2, 6) + rng.uniform(0, 6))
    return coord > edge


def _card(rng, size):
    """A reference card: white, a black-and-white marker, colour patches. Returns (RGB image, bool mask)."""
    w = int(size)
    h = max(8, int(size * 0.62))
    card = np.full((h, w, 3), 245, np.uint8)
    cell = max(2, h // 8)
    bits = rng.integers(0, 2, (5, 5))
    x0, y0 = cell, cell
    card[y0:y0 + 7 * cell, x0:x0 + 7 * cell] = 0
    for i in range(5):
        for j in range(5):
            if bits[i, j]:
                card[y0 + (i + 1) * cell:y0 + (i + 2) * cell, x0 + (j + 1) * cell:x0 + (j + 2) * cell] = 255
    patches = [(40, 40, 40), (120, 120, 120), (200, 200, 200), (224, 172, 140), (150, 100, 70),
               (95, 60, 45), (200, 60, 50), (60, 150, 70)]
    px = x0 + 8 * cell
    pw = max(2, (w - px - cell) // 4)
    for k, colour in enumerate(patches):
        r, c = divmod(k, 4)
        card[y0 + r * 3 * cell:y0 + r * 3 * cell + 2 * cell, px + c * pw:px + (c + 1) * pw - 1] = colour
    cv2.rectangle(card, (0, 0), (w - 1, h - 1), (30, 30, 30), max(1, cell // 3))
    return card, np.ones((h, w), bool)


def _place(canvas, mask, patch, patch_mask, rng, where):
    """Warp a rigid patch (random rotation and slight tilt) onto `canvas` around `where` (x, y).

    Returns the canvas and the bool mask of what the patch covers.
    """
    h, w = canvas.shape[:2]
    ph, pw = patch_mask.shape
    angle = rng.uniform(0, 360)
    m = cv2.getRotationMatrix2D((pw / 2, ph / 2), angle, 1.0)
    m[:, 2] += np.asarray(where) - (pw / 2, ph / 2)
    affine = np.vstack([m, [0, 0, 1]])
    tilt = np.eye(3)
    tilt[2, :2] = rng.uniform(-0.3, 0.3, 2) / max(ph, pw)
    matrix = affine @ tilt
    warped = cv2.warpPerspective(patch, matrix, (w, h), flags=cv2.INTER_LINEAR)
    cover = cv2.warpPerspective(patch_mask.astype(np.uint8) * 255, matrix, (w, h), flags=cv2.INTER_LINEAR)
    alpha = cover.astype(np.float32)[..., None] / 255
    out = _blend(canvas, warped, alpha)
    return out, (cover > 127) | (mask if mask is not None else False)


def _second_object(rng, h, w):
    """Something else in the frame (a pen, a coin, a fingertip): RGB image and bool mask, frame size."""
    layer = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    unit = max(h, w)
    kind = rng.integers(3)
    centre = rng.uniform(0.1, 0.9, 2) * (w, h)
    if kind == 0:  # pen
        angle = rng.uniform(0, np.pi)
        half = rng.uniform(0.2, 0.4) * unit * np.array([np.cos(angle), np.sin(angle)])
        p0, p1 = (centre - half).astype(int), (centre + half).astype(int)
        colour = [(30, 40, 160), (20, 20, 20), (200, 200, 210)][rng.integers(3)]
        thick = max(3, int(0.025 * unit))
        cv2.line(layer, tuple(map(int, p0)), tuple(map(int, p1)), colour, thick, cv2.LINE_AA)
        cv2.line(mask, tuple(map(int, p0)), tuple(map(int, p1)), 255, thick, cv2.LINE_AA)
    elif kind == 1:  # coin
        r = int(rng.uniform(0.04, 0.08) * unit)
        cv2.circle(layer, tuple(map(int, centre)), r, (170, 160, 120), -1, cv2.LINE_AA)
        cv2.circle(layer, tuple(map(int, centre)), int(r * 0.8), (140, 130, 95), 2, cv2.LINE_AA)
        cv2.circle(mask, tuple(map(int, centre)), r, 255, -1, cv2.LINE_AA)
    else:  # fingertip with a nail, from the frame's edge
        r = int(rng.uniform(0.08, 0.14) * unit)
        edge = [(int(centre[0]), 0), (int(centre[0]), h - 1), (0, int(centre[1])), (w - 1, int(centre[1]))]
        start = edge[rng.integers(4)]
        skin = tuple(int(v) for v in rng.uniform([170, 120, 100], [230, 180, 150]))
        cv2.line(layer, start, tuple(map(int, centre)), skin, 2 * r, cv2.LINE_AA)
        cv2.line(mask, start, tuple(map(int, centre)), 255, 2 * r, cv2.LINE_AA)
        cv2.circle(layer, tuple(map(int, centre)), int(r * 0.6), (235, 200, 200), -1, cv2.LINE_AA)
    shade = 1 + 0.1 * cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 3)
    layer = np.clip(layer * shade[..., None], 0, 255).astype(np.uint8)
    return layer, mask > 127


def _phone_confounder(image, lesion, kind, rng):
    """A change that must not count, drawn on the scene (baseline frame)."""
    h, w = image.shape[:2]
    unit = max(h, w) / _BENCH_SIDE
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    if lesion.any():
        ys, xs = np.nonzero(lesion)
        cx, cy, radius = xs.mean(), ys.mean(), np.sqrt(lesion.sum() / np.pi)
    else:
        cx, cy, radius = w / 2, h / 2, 0.05 * max(h, w)
    if kind == "hair":
        from .synth import _add_confounder

        return _add_confounder(image, "hair", rng)
    if kind == "ink":  # a surgeon's circle around the lesion, sometimes with a tick
        layer = np.zeros((h, w), np.uint8)
        r = radius * rng.uniform(1.5, 3.0) + 10 * unit
        axes = (int(r * rng.uniform(0.8, 1.2)), int(r * rng.uniform(0.8, 1.2)))
        cv2.ellipse(layer, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, rng.uniform(270, 360), 255,
                    max(2, int(rng.uniform(2, 5) * unit)), cv2.LINE_AA)
        colour = np.array(rng.uniform([60, 30, 110], [130, 80, 190]), np.uint8)
        return _blend(image, np.broadcast_to(colour, image.shape), layer[..., None] / 255.0 * rng.uniform(0.5, 0.85))
    if kind == "shadow":  # the phone's or the hand's shadow: soft, large, deep
        centre = np.array([cx, cy]) + rng.normal(0, 0.25, 2) * (w, h)
        axes = rng.uniform(0.2, 0.45, 2) * max(h, w)
        theta = rng.uniform(0, np.pi)
        u = ((xx - centre[0]) * np.cos(theta) + (yy - centre[1]) * np.sin(theta)) / axes[0]
        v = (-(xx - centre[0]) * np.sin(theta) + (yy - centre[1]) * np.cos(theta)) / axes[1]
        inside = np.clip((1 - np.hypot(u, v)) / rng.uniform(0.15, 0.5), 0, 1)
        gain = 1 - rng.uniform(0.25, 0.55) * inside
        bluish = np.array([1.0, 1.0, rng.uniform(1.0, 1.08)], np.float32)  # skylight fills the shade
        out = image.astype(np.float32) * gain[..., None] * np.where(inside[..., None] > 0.5, bluish, 1)
        return np.clip(out, 0, 255).astype(np.uint8)
    if kind == "flash":  # glints on the skin's relief plus the flash's bright centre
        alpha = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(5, 30)):
            px, py = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
            sx, sy = rng.uniform(1.5, 8, 2) * unit
            alpha = np.maximum(alpha, np.exp(-(((xx - px) / sx) ** 2 + ((yy - py) / sy) ** 2)))
        centre = 1 + rng.uniform(0.1, 0.3) * np.exp(-(((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (0.4 * max(h, w)) ** 2))
        out = np.clip(image.astype(np.float32) * centre[..., None], 0, 255).astype(np.uint8)
        return _blend(out, np.full_like(out, 255), alpha[..., None] * rng.uniform(0.6, 0.95))
    if kind == "cream":  # a shiny film: a little lighter, less saturated, soft highlights
        centre = np.array([cx, cy]) + rng.normal(0, radius + 20 * unit, 2)
        r = rng.uniform(2, 5) * (radius + 10 * unit)
        film = np.clip((1 - np.hypot(xx - centre[0], yy - centre[1]) / r) / 0.3, 0, 1)
        film *= cv2.resize(rng.uniform(0.6, 1.0, (5, 5)).astype(np.float32), (w, h))
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float32)
        lab[..., 0] += film * rng.uniform(3, 10)
        lab[..., 1:] = 128 + (lab[..., 1:] - 128) * (1 - 0.2 * film[..., None])
        out = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_Lab2RGB)
        sheen = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 4 * unit + 1)
        sheen = np.clip((sheen - sheen.mean()) / (sheen.std() + 1e-6) - 1.5, 0, 1) * film
        return _blend(out, np.full_like(out, 255), sheen[..., None] * 0.5)
    if kind == "fold":  # another pose: the skin creases along a line
        angle = rng.uniform(0, np.pi)
        offset = rng.uniform(-0.3, 0.3) * max(h, w)
        d = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle) - offset
        width = rng.uniform(4, 12) * unit
        # The skin either side of the crease is pushed towards it; farther away it does not move.
        push = rng.uniform(2, 5) * unit * np.tanh(d / width) * np.exp(-(d / (6 * width)) ** 2)
        map_x = (xx + push * np.cos(angle)).astype(np.float32)
        map_y = (yy + push * np.sin(angle)).astype(np.float32)
        out = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        crease = 1 - 0.25 * np.exp(-(d / (0.4 * width)) ** 2)
        return np.clip(out * crease[..., None], 0, 255).astype(np.uint8)
    raise ValueError(f"unknown confounder {kind!r}; use one of {PHONE_CONFOUNDERS}.")


def _phone_camera(rng, h, w, *, scale_range, max_tilt, rotation):
    """Baseline -> follow-up homography of a phone at another distance, tilt and roll, and its parameters.

    The skin is a plane facing the baseline camera; the follow-up camera turns by up to `max_tilt`
    degrees about an axis in that plane, rolls by up to `rotation` degrees and moves 0.5-2x as far.
    """
    focal = rng.uniform(0.8, 1.3) * max(h, w)
    k = np.array([[focal, 0, (w - 1) / 2], [0, focal, (h - 1) / 2], [0, 0, 1]])
    scale = np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1])))
    tilt = np.deg2rad(rng.uniform(0, max_tilt))
    axis = rng.uniform(0, np.pi)
    u = np.array([np.cos(axis), np.sin(axis), 0.0])
    cross = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    tilt_r = np.eye(3) + np.sin(tilt) * cross + (1 - np.cos(tilt)) * cross @ cross
    roll = np.deg2rad(rng.uniform(-rotation, rotation))
    roll_r = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    r = roll_r @ tilt_r
    # Plane point (X, Y) in baseline pixels about the centre; the baseline sees it at depth `focal`.
    shift = rng.uniform(-0.1, 0.1, 2) * (w, h)
    plane_to_base = np.array([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1.0]])
    t = np.array([shift[0] / scale, shift[1] / scale, focal / scale])
    plane_to_follow = k @ np.column_stack([r[:, 0], r[:, 1], t])
    b2f = plane_to_follow @ np.linalg.inv(plane_to_base)
    params = {"scale": round(float(scale), 3), "tilt_deg": round(float(np.rad2deg(tilt)), 1),
              "rotation_deg": round(float(np.rad2deg(roll)), 1), "focal": round(float(focal / max(h, w)), 2)}
    return b2f / b2f[2, 2], params


def _phone_photometric(image, rng, params, *, flash):
    """Exposure, white balance, gamma, light fall-off, flash, motion blur, noise and JPEG, in that order."""
    h, w = image.shape[:2]
    img = (image.astype(np.float32) / 255) ** 2.2  # linear light
    gain = rng.uniform(0.7, 1.3)
    wb = rng.uniform(0.8, 1.2, 3)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle)
    light = 1 + rng.uniform(0, 0.6) * ramp
    if flash:
        r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (0.5 * max(h, w)) ** 2
        light = light * (1 + rng.uniform(0.2, 0.5) * np.exp(-r2))
        wb = wb * np.array([0.95, 1.0, 1.08])
    img = np.clip(img * gain * wb * light[..., None], 0, 1) ** (1 / 2.2 * rng.uniform(0.85, 1.15))
    length = rng.uniform(0, 0.008) * max(h, w)
    if length >= 2:
        kernel = np.zeros((int(length) | 1, int(length) | 1), np.float32)
        kernel[kernel.shape[0] // 2] = 1
        rot = cv2.getRotationMatrix2D((kernel.shape[1] / 2 - 0.5, kernel.shape[0] / 2 - 0.5),
                                      rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, rot, kernel.shape[::-1])
        img = cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))
    sigma = rng.uniform(0, 1.2) * max(h, w) / _BENCH_SIDE
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    noise = rng.uniform(0.003, 0.02)
    img = img + rng.normal(0, 1, img.shape).astype(np.float32) * noise * np.sqrt(np.clip(img, 0.02, 1))
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    quality = int(rng.integers(60, 96))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    params.update(gain=round(float(gain), 3), motion_px=round(float(length), 1), blur_sigma=round(float(sigma), 2),
                  jpeg_quality=quality, flash=bool(flash))
    return out


def _pink_papule(skin_rgb):
    """A donor factory for a non-pigmented new lesion: a pink, pearly dome with a glint."""
    def make(rng, diameter):
        colour = np.clip(np.asarray(skin_rgb, np.float32) * rng.uniform([0.95, 0.72, 0.75], [1.05, 0.85, 0.88]),
                         0, 255)
        patch, mask = _donor_blob(rng, diameter, colour=colour)
        size = mask.shape[0]
        yy, xx = np.mgrid[:size, :size] - size / 2
        dome = np.clip(1 - np.hypot(xx + size * 0.12, yy + size * 0.12) / (diameter * 0.25), 0, 1)
        patch = np.clip(patch.astype(np.float32) + 60 * dome[..., None] ** 2, 0, 255).astype(np.uint8)
        return patch, mask
    return make


def make_phone_pair(image, *, lesion_mask, kind="none", confounder=None, rng=None, donor=None,
                    background=None, card=None, second_object=False, flash=None,
                    scale_range=(0.5, 2.0), max_tilt=40.0, rotation=180.0):
    """Generate a phone baseline/follow-up pair with known truth from one phone photo of skin.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
        A real phone photo of skin (the scene).
    lesion_mask : ndarray, shape (M, N), bool
        The lesion in `image` (growth and darkening act on it; new lesions go near it).
    kind : {'none', 'new_lesion', 'growth', 'darkening'}
    confounder : {None, 'hair', 'shadow', 'flash', 'ink', 'cream', 'fold'}
    rng : numpy.random.Generator, optional
    donor : tuple (ndarray (P, Q, 3) uint8, ndarray (P, Q) bool) or 'pink', optional
        The new lesion: a real lesion and its mask, or ``'pink'`` for a non-pigmented papule;
        a brown blob when omitted.
    background : {None, 'drape', 'wood', 'fabric', 'paper', 'dark'}
        With a background, the baseline shows the body part's edge and that background, and the
        follow-up another background (the patient is elsewhere).
    card : {None, 'moved', 'baseline', 'followup'}
        A rigid reference card on the skin: in both photos at other places of the skin, only in the
        baseline, or only in the follow-up.
    second_object : bool
        A pen, a coin or a fingertip in the follow-up's frame.
    flash : bool, optional
        Follow-up taken with the flash; drawn at random when omitted.
    scale_range, max_tilt, rotation
        Follow-up zoom range (0.5 = twice as far), largest tilt and roll in degrees.

    Returns
    -------
    pair : registration.synth.SynthPair
        ``change_mask`` holds changed baseline pixels of visible skin; ``params`` the draws, with
        ``skin`` (bool, baseline frame: the body part, cards excluded) and ``moving_skin`` (the
        same in the follow-up's frame) among them.
    """
    image = _check_rgb(image, "image")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}.")
    rng = np.random.default_rng() if rng is None else rng
    h, w = image.shape[:2]
    unit = max(h, w) / _BENCH_SIDE
    lesion = np.asarray(lesion_mask).astype(bool)
    if lesion.shape != (h, w):
        raise ValueError("lesion_mask must have the photo's height and width.")
    if kind in ("growth", "darkening") and lesion.sum() < 30:
        raise ValueError(f"kind {kind!r} needs a visible lesion; pass its mask or another image.")
    body = _body_region(rng, h, w) if background else np.ones((h, w), bool)
    if background and (lesion & ~body).any():
        body |= cv2.dilate(lesion.astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    params = {"background": background, "card": card, "second_object": bool(second_object)}
    changed, change_mask = image, np.zeros((h, w), bool)
    if kind == "new_lesion":
        if isinstance(donor, str) and donor == "pink":
            donor = _pink_papule(np.median(image[body & ~lesion], axis=0))
            params["pigmented"] = False
        changed, change_mask, extra = _add_new_lesion(image, lesion, body, rng, donor, unit=unit)
        params.update(extra)
    elif kind == "growth":
        changed, change_mask, extra = _add_growth(image, lesion, rng)
        params.update(extra)
    elif kind == "darkening":
        changed, change_mask, extra = _add_darkening(image, lesion, rng)
        params.update(extra)
    if confounder is not None:
        changed = _phone_confounder(changed, lesion, confounder, rng)
    baseline = image.copy()
    skin = body.copy()
    card_size = rng.uniform(0.15, 0.3) * max(h, w)
    card_image, card_mask = _card(rng, card_size)
    if card in ("moved", "baseline"):
        where = _spot_away(rng, lesion, body, card_size)
        baseline, covered = _place(baseline, None, card_image, card_mask, rng, where)
        skin &= ~covered
    if background:
        scene_bg = _background(background, rng, h, w)
        baseline = np.where(body[..., None], baseline, scene_bg)
    b2f, capture = _phone_camera(rng, h, w, scale_range=scale_range, max_tilt=max_tilt, rotation=rotation)
    params["capture"] = capture
    follow = cv2.warpPerspective(changed, b2f, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    shown = cv2.warpPerspective(body.astype(np.uint8) * 255, b2f, (w, h), flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(np.full((h, w), 255, np.uint8), b2f, (w, h), flags=cv2.INTER_LINEAR)
    alpha = (np.minimum(shown, inside).astype(np.float32) / 255)[..., None]
    other = str(rng.choice(BACKGROUNDS))
    follow = _blend(_background(other, rng, h, w), follow, alpha)
    params["followup_background"] = other
    follow_covered = np.zeros((h, w), bool)
    if card in ("moved", "followup"):
        where = rng.uniform(0.15, 0.85, 2) * (w, h)
        follow, follow_covered = _place(follow, None, card_image, card_mask, rng, where)
    if second_object:
        layer, obj = _second_object(rng, h, w)
        follow = np.where(obj[..., None], layer, follow)
        follow_covered |= obj
    if flash is None:
        flash = bool(rng.random() < 0.3)
    follow = _phone_photometric(follow, rng, capture, flash=flash)
    truth = np.linalg.inv(b2f)
    truth /= truth[2, 2]
    # What covers the skin in the follow-up (card, object), in the baseline frame.
    hidden = cv2.warpPerspective(follow_covered.astype(np.uint8), truth, (w, h), flags=cv2.INTER_NEAREST) > 0
    params["skin"] = skin & ~hidden
    # The follow-up's skin: the body part where the frame shows it, minus what lies on it.
    body_follow = cv2.warpPerspective(skin.astype(np.uint8), b2f, (w, h), flags=cv2.INTER_NEAREST) > 0
    params["moving_skin"] = body_follow & ~follow_covered
    change_mask &= skin & ~hidden
    return SynthPair(baseline, follow, truth, change_mask, kind, confounder, params)


def _spot_away(rng, lesion, body, size):
    """A card centre on the body part, clear of the lesion by about the card's size."""
    h, w = lesion.shape
    dist = cv2.distanceTransform((~lesion).astype(np.uint8), cv2.DIST_L2, 5)
    ok = np.argwhere(body & (dist > 0.6 * size))
    if len(ok) == 0:
        return rng.uniform(0.1, 0.9, 2) * (w, h)
    y, x = ok[rng.integers(len(ok))]
    return np.array([x, y], float)
