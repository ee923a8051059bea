"""Skin segmentation: which pixels of a phone photo show the patient's skin.

Skin colour is learned from the photo itself: the skin around the site (or, without a site, the
photo's central part, where patients put the scar) gives a robust model of its chromaticity, which
holds across skin tones (Fitzpatrick I-VI differ mostly in lightness and saturation, not in hue),
under shading (chromaticity of linear RGB ignores the light's strength) and after the phone's white
balance. A pixel is skin when its chromaticity is close to that model and its hue is a skin hue.
What is around the body part is left out: clothing, drapes, paper, a reference card, furniture of
another colour. Skin-coloured surroundings (light wood, a beige wall) and fingernails can pass as
skin when they touch it; they are only left out when they are separated from it.
"""

import cv2
import numpy as np

from ._imageutil import _check_rgb, _resize

#: Long side (px) the segmentation works at; the mask is scaled back to the photo's size.
_SKIN_SIDE = 256
#: Mahalanobis distance (in chromaticity) within which a pixel is skin.
_MAX_DISTANCE = 5.0
#: Smallest spread (rg chromaticity) of the skin model: one photo's skin is more uniform than skin
#: under another light, and the spread must not shrink to the noise.
_MIN_SPREAD = 0.012
#: Largest hue difference (degrees, CIELAB a*b*) from the photo's skin: blue drapes, green
#: gowns and purple ink are far from any skin under any white balance.
_MAX_HUE_SHIFT = 50.0
#: Hues (degrees, CIELAB a*b*) a skin colour cluster may have: from red to yellow, with room for
#: a phone's white balance.
_SKIN_HUES = (-30.0, 115.0)
#: Below this chroma a hue means nothing; such pixels are judged by chromaticity alone.
_MIN_HUE_CHROMA = 6.0
#: Below this lightness (CIELAB L) nothing can be told apart: not skin.
_MIN_LIGHTNESS = 6.0
#: A skin-coloured part away from the photo's middle counts only when at least this share of it.
_MIN_OTHER_AREA = 0.03
#: Smallest rigid object (share of the photo) looked for.
_MIN_RIGID_AREA = 0.003
#: Share of its smallest enclosing rectangle that a four-sided object fills (an ellipse: 0.785).
_RECT_FILL = 0.88
#: Bright and colourless (CIELAB L, chroma): no skin is both, under any light the phone balanced.
_WHITE_LIGHTNESS = 90.0
_WHITE_CHROMA = 5.0
#: Dark and colourless (CIELAB L): a card's print, whose squares join its white into one object.
_BLACK_LIGHTNESS = 20.0
#: A skin-coloured cluster with at least this share of the photo's middle is part of the body.
_BODY_MIDDLE_SHARE = 0.15
#: Largest share of the photo a printed object (card, ruler) is filled to its hull over.
_MAX_OBJECT_SHARE = 0.3
#: Chroma (CIELAB) from which a colour outside skin's hues is an object's, not the body's.
_FOREIGN_CHROMA = 12.0
#: Share of a 9-px window that must be colourless white, and black, to be print.
_PRINT_SHARE = 0.2
#: A part that is not skin-coloured and reaches the border is the surroundings unless at least
#: this share of it lies in the photo's middle (then it is taken for a large lesion).
_MAX_MIDDLE_SHARE = 0.25
#: ... and at least this share of the photo: a smaller dark or red part at the border is more
#: likely a lesion cut by the frame than the room (and a lesion must never be left unseen).
_MIN_SURROUNDINGS = 0.01


def _chromaticity(image):
    """rg chromaticity of linear RGB, shape (M, N, 2), float32: independent of the light's strength."""
    linear = (image.astype(np.float32) / 255.0) ** 2.2
    total = linear.sum(axis=-1, keepdims=True) + 1e-4
    return (linear[..., :2] / total).astype(np.float32)


def _clusters(features, k=4, iterations=8):
    """Deterministic k-means: labels, shape (P,), of `features` (P, D) float32."""
    order = np.argsort(features @ np.linalg.svd(features - features.mean(0), full_matrices=False)[2][0])
    centres = features[order[((np.arange(k) + 0.5) / k * len(order)).astype(int)]]
    for _ in range(iterations):
        labels = np.argmin(((features[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        for j in range(k):
            if (labels == j).any():
                centres[j] = features[labels == j].mean(0)
    return labels


def _seeds(image, chroma, site_mask):
    """Pixel sets assumed to be the body, one per colour: a ring around the site, or clusters.

    Without a site, the photo's colours are clustered. Skin-coloured clusters (not blue, green,
    paper white or black) that fill the middle of the photo, where the patient puts the scar,
    are the body: the skin, and a lesion or a shaded part of it; the strongest is the one that
    also lines the border (skin surrounds the scar). Clusters along the border only, or of a
    colour no skin has, are the surroundings.
    """
    h, w = chroma.shape[:2]
    if site_mask is not None and site_mask.any():
        size = max(3, int(0.06 * max(h, w)) | 1)
        outer = cv2.dilate(site_mask.astype(np.uint8), np.ones((size * 3, size * 3), np.uint8))
        inner = cv2.dilate(site_mask.astype(np.uint8), np.ones((size, size), np.uint8))
        ring = (outer > 0) & (inner == 0)
        if ring.sum() >= 50:
            return [ring]
    step = max(1, int(np.sqrt(h * w / 4000)))  # about 4,000 pixels are plenty to cluster
    lightness = image[::step, ::step].max(axis=-1).astype(np.float32) / 255
    features = np.concatenate([chroma[::step, ::step] * 10, lightness[..., None]], axis=-1)
    labels = _clusters(features.reshape(-1, 3)).reshape(lightness.shape)
    sh, sw = labels.shape
    middle = np.zeros(labels.shape, bool)
    middle[int(0.2 * sh):int(0.8 * sh), int(0.2 * sw):int(0.8 * sw)] = True
    band = np.ones(labels.shape, bool)
    band[int(0.1 * sh):int(0.9 * sh), int(0.1 * sw):int(0.9 * sw)] = False
    lab = cv2.cvtColor(image[::step, ::step], cv2.COLOR_RGB2Lab).astype(np.float32)
    scores, body = [], []
    for j in range(labels.max() + 1):
        members = labels == j
        if not members.any():
            scores.append(-1.0)
            body.append(False)
            continue
        light, a, b = (float(np.median(lab[..., c][members])) for c in range(3))
        light, a, b = light * 100 / 255, a - 128, b - 128
        hue, chroma_j = np.degrees(np.arctan2(b, a)), np.hypot(a, b)
        # Whatever the white balance, skin is warmer than a blue drape or a green gown, and
        # neither paper white nor black; very pale skin may have almost no colour.
        wrong = (chroma_j >= _MIN_HUE_CHROMA and not _SKIN_HUES[0] <= hue <= _SKIN_HUES[1]) or \
                (chroma_j < _MIN_HUE_CHROMA and not _BLACK_LIGHTNESS < light < _WHITE_LIGHTNESS)
        in_middle = float(np.mean(members[middle]))
        scores.append((0.1 if wrong else 1.0) * (in_middle + 0.5 * float(np.mean(members[band]))))
        body.append(not wrong and in_middle >= _BODY_MIDDLE_SHARE)
    best = int(np.argmax(scores))
    chosen = [best] + [j for j in range(len(body)) if body[j] and j != best]
    seeds = []
    for j in chosen:
        seed = cv2.resize((labels == j).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        if site_mask is not None:
            seed &= ~site_mask
        if seed.sum() >= 20:
            seeds.append(seed)
    return seeds or [np.ones((h, w), bool)]


def _model(chroma, seed):
    """Robust mean and inverse covariance of the seed's chromaticity (its dominant colour)."""
    values = chroma[seed]
    centre = np.median(values, axis=0)
    # The seed may hold a lesion, ink or hair: keep the half closest to the median, then refit.
    for _ in range(2):
        d = np.linalg.norm(values - centre, axis=1)
        close = values[d <= np.quantile(d, 0.6)]
        centre = close.mean(axis=0)
    cov = np.cov(close.T) * 2.5 + np.eye(2) * _MIN_SPREAD**2
    return centre, np.linalg.inv(cov)


def skin_likeness(image, *, site_mask=None):
    """Per-pixel Mahalanobis distance to the photo's own skin colours (low = skin-like).

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
        RGB photo, at any size (a small copy is best: this works per pixel).
    site_mask : ndarray, shape (M, N), bool, optional
        The lesion or scar; the skin around it teaches the model.

    Returns
    -------
    distance : ndarray, shape (M, N), float32
        Distance to the nearest of the body's colours; infinite where the hue or the lightness
        rules out skin.
    """
    image = _check_rgb(image, "image")
    h, w = image.shape[:2]
    if site_mask is not None:
        site_mask = np.asarray(site_mask).astype(bool)
        if site_mask.shape != (h, w):
            raise ValueError("site_mask must have the photo's height and width.")
    chroma = _chromaticity(image)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float32)
    lightness = lab[..., 0] * (100.0 / 255.0)
    a, b = lab[..., 1] - 128, lab[..., 2] - 128
    hue = np.arctan2(b, a)
    distance = np.full((h, w), np.inf, np.float32)
    plausible = np.hypot(a, b) < _MIN_HUE_CHROMA
    for seed in _seeds(image, chroma, site_mask):
        centre, inverse = _model(chroma, seed)
        diff = chroma - centre
        own = np.sqrt(np.einsum("...i,ij,...j->...", diff, inverse, diff))
        distance = np.minimum(distance, own)
        close = seed & (own <= np.median(own[seed]))
        seed_hue = np.arctan2(np.median(b[close]), np.median(a[close]))
        plausible |= np.degrees(np.abs(np.angle(np.exp(1j * (hue - seed_hue))))) <= _MAX_HUE_SHIFT
    plausible &= lightness >= _MIN_LIGHTNESS
    return np.where(plausible, distance, np.inf).astype(np.float32)


def _rigid(other, shape):
    """Bool mask of non-skin parts outlined by four straight sides: a card, a ruler, a label, paper.

    Lesions and wounds have irregular or rounded outlines; what a factory made has four sides.
    """
    closed = cv2.morphologyEx(other, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros(shape, np.uint8)
    for contour in contours:
        area = cv2.contourArea(contour)
        x, y, w, h = cv2.boundingRect(contour)
        # What reaches the photo's border is judged as surroundings, not here (the frame's
        # own edges are straight).
        if area < _MIN_RIGID_AREA * shape[0] * shape[1] or x == 0 or y == 0 or \
                x + w == shape[1] or y + h == shape[0]:
            continue
        corners = cv2.approxPolyDP(contour, 0.03 * cv2.arcLength(contour, True), True)
        (_, _), (rw, rh), _ = cv2.minAreaRect(contour)
        # Four corners and filling its bounding rectangle: a card or a ruler, even tilted; a
        # round or oval lesion fills at most pi/4 of it and needs more corners.
        if len(corners) == 4 and area >= _RECT_FILL * rw * rh:
            cv2.drawContours(out, [contour], -1, 1, -1)
    return out > 0


def _paper_white(lab):
    """Bool mask of bright, colourless pixels (`lab`: 8-bit OpenCV CIELAB as float32): paper, a
    white card or drape, specular glare."""
    chroma = np.hypot(lab[..., 1] - 128, lab[..., 2] - 128)
    return (lab[..., 0] * (100.0 / 255.0) >= _WHITE_LIGHTNESS) & (chroma <= _WHITE_CHROMA)


def _black(lab):
    """Bool mask of dark, colourless pixels (`lab` as for :func:`_paper_white`): print on a
    card, a marker's squares (and dark hair)."""
    chroma = np.hypot(lab[..., 1] - 128, lab[..., 2] - 128)
    return (lab[..., 0] * (100.0 / 255.0) <= _BLACK_LIGHTNESS) & (chroma <= _WHITE_CHROMA)


def _printed(lab):
    """Bool mask of print: colourless black next to colourless white, densely (a card's marker,
    a ruler's scale, text). Hair on skin is too thin and skin too coloured to look like it."""
    light = lab[..., 0] * (100.0 / 255.0)
    chroma = np.hypot(lab[..., 1] - 128, lab[..., 2] - 128)
    white = ((light >= 70) & (chroma <= 8)).astype(np.float32)
    black = ((light <= 30) & (chroma <= 10)).astype(np.float32)
    both = (cv2.blur(white, (9, 9)) >= _PRINT_SHARE) & (cv2.blur(black, (9, 9)) >= _PRINT_SHARE)
    return cv2.dilate(both.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def _printed_objects(colourless, printed):
    """Bool mask of the colourless (white or black, bool) objects that carry print, each filled
    to its convex hull: a card's white, its marker and the colour patches it frames are one
    convex thing. Coloured neighbours (a lesion beside the card) are not joined to it."""
    out = printed.astype(np.uint8)
    n, labels = cv2.connectedComponents(colourless.astype(np.uint8) | out, connectivity=8)
    for i in np.unique(labels[printed]):
        if i == 0:
            continue
        points = cv2.findNonZero((labels == i).astype(np.uint8))
        hull = cv2.convexHull(points)
        # A hull as large as the photo means the print touches the surroundings: keep to the part.
        if cv2.contourArea(hull) <= _MAX_OBJECT_SHARE * colourless.size:
            cv2.fillConvexPoly(out, hull, 1)
        else:
            out[labels == i] = 1
    return out > 0


def _surroundings(labels, stats, middle):
    """Per label of a part that is not skin: True when it reaches the border, is not small and
    lies mostly away from the `middle` (bool mask) of the photo; label 0 (skin) is False."""
    sh, sw = labels.shape
    area = np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
    in_middle = np.bincount(labels[middle], minlength=len(stats)) / area
    x, y, bw, bh = (stats[:, i] for i in range(4))
    touches = (x == 0) | (y == 0) | (x + bw == sw) | (y + bh == sh)
    around = touches & (in_middle < _MAX_MIDDLE_SHARE) & (area >= _MIN_SURROUNDINGS * sh * sw)
    around[0] = False
    return around


def segment_skin(image, *, site_mask=None):
    """Segment the skin in a photo: the body part around the site, without its surroundings.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
        RGB photo.
    site_mask : ndarray, shape (M, N), bool, optional
        The lesion or scar (counted as skin whatever its colour, a wound or an ulcer, unless a
        card or another printed or four-sided object lies on it).

    Returns
    -------
    skin : ndarray, shape (M, N), bool
        Skin, with the lesions, hair and ink lines inside it; the site itself included.
    """
    image = _check_rgb(image, "image")
    h, w = image.shape[:2]
    scale = min(1.0, _SKIN_SIDE / max(h, w))
    small = _resize(image, scale)
    sh, sw = small.shape[:2]
    site_small = None
    if site_mask is not None:
        site_mask = np.asarray(site_mask).astype(bool)
        if site_mask.shape != (h, w):
            raise ValueError("site_mask must have the photo's height and width.")
        site_small = cv2.resize(site_mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
    distance = skin_likeness(cv2.GaussianBlur(small, (0, 0), 1.0), site_mask=site_small)
    # What is not skin-coloured is the surroundings only when it reaches the border, is not
    # small and lies mostly away from the middle: a lesion, a wound or ink inside the skin (or a
    # large lesion filling the middle and touching the border) stays in, which is the safe side.
    middle = np.zeros((sh, sw), bool)
    middle[int(0.25 * sh):int(0.75 * sh), int(0.25 * sw):int(0.75 * sw)] = True
    other = (distance > _MAX_DISTANCE).astype(np.uint8)
    other = cv2.medianBlur(other, 5)
    other = cv2.morphologyEx(other, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(other, connectivity=8)
    around = _surroundings(labels, stats, middle)
    # Paper white by the same rule, apart: glare or pale skin inside the body stays (the
    # comparison knows glare), and a lesion on it does not join the white into one part.
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab).astype(np.float32)
    white = _paper_white(lab)
    _, white_labels, white_stats, _ = cv2.connectedComponentsWithStats(white.astype(np.uint8), connectivity=8)
    white_around = _surroundings(white_labels, white_stats, middle)
    # Wherever it lies, what has a colour no skin or lesion has (a blue pen or glove, a green
    # gown, purple ink) or carries print (a card, a ruler) is not skin.
    area = np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
    a = np.bincount(labels.ravel(), lab[..., 1].ravel() - 128, minlength=n) / area
    b = np.bincount(labels.ravel(), lab[..., 2].ravel() - 128, minlength=n) / area
    hue = np.degrees(np.arctan2(b, a))
    foreign = (np.hypot(a, b) >= _FOREIGN_CHROMA) & ((hue < _SKIN_HUES[0]) | (hue > _SKIN_HUES[1]))
    printed = _printed(lab)
    foreign |= np.bincount(labels[printed], minlength=n) > 0
    white_around |= np.bincount(white_labels[printed], minlength=len(white_stats)) > 0
    white_around[0] = False
    around = (around | foreign)
    around[0] = False
    colourless = white | _black(lab)
    objects = other | colourless.astype(np.uint8)
    # A card or ruler is never skin, not even where it lies on the site.
    made = _printed_objects(colourless, printed) | _rigid(objects, (sh, sw))
    mask = ~around[labels] & ~white_around[white_labels] & ~made
    if site_small is not None:
        mask |= site_small & ~made
    # Skin-coloured specks in the surroundings (wood grain, a beige pattern) are not the body.
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = (stats[:, cv2.CC_STAT_AREA] >= _MIN_OTHER_AREA * sh * sw) | (np.bincount(labels[middle], minlength=n) > 0)
    keep[0] = False
    mask = keep[labels].astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR) > 0
    if site_mask is not None:
        made = cv2.resize(made.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        mask |= site_mask & ~made
    return mask
