"""Change detection between a baseline and an aligned, colour-normalised follow-up.

What counts: skin that became darker (new lesion, growth; also skin that
crossed the lesion/skin lightness boundary), browner (pale pigment spreading
gains yellow-brown chroma more than it loses lightness), greyer or bluer
(blue-grey areas) or redder. What must not: hair and ink lines (thin, removed by
morphology before comparing, and long thin regions dropped), glare
(brightening is ignored), shadows and colour casts (removed by
normalisation, a shadow-likeness weight and a top-hat that keeps only compact
changes), small misalignment (each follow-up pixel is compared with the most
similar value in a small baseline neighbourhood), over-exposure (a hue shift
that a clipped colour channel explains is not counted).
"""

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes
from skimage.color import deltaE_ciede2000

from .calibration import CHANGE_SCORE_COEFFICIENTS

#: Hysteresis thresholds on the change evidence, in CIELAB units.
_HIGH = 12.0
_LOW = 6.0
#: Smallest region kept, in pixels of a 640-px-long-side image.
_MIN_AREA = 100
#: Thin-structure size (px) removed before comparing: hair, ink lines.
_THIN = 11
#: A thin structure is a spot (not a line: hair, ink) when its area is at most
#: this times its squared width (a disc has 0.8, a 2:1 oval 1.6) ...
_SPOT_AREA = 3.0
#: ... and its length at most this times its width.
_SPOT_ELONGATION = 3.0
#: Regions no wider than twice this (px) and long are lines (hair, ink), not lesions.
_LINE_HALF_WIDTH = 4.5
#: Changes broader than this (px at a 640-px long side) are lighting, not lesions.
_BROAD = 121
#: Darkening to below this share of the baseline lightness is never a mere shadow.
_DEEP = 0.7
#: Unfiltered evidence (CIELAB units) that a change extends over: about twice
#: the 99th percentile on unchanged skin after normalisation.
_EXTENT_LOW = 3.0
#: How far (px at a 640-px long side) a change may extend beyond its compact core.
_GROW_RADIUS = 60
#: Out to this distance a patchy change (a darkening in blotches) also extends
#: over weaker evidence that is spatially coherent: at least ``_FAR_LOW`` after a
#: Gaussian blur of ``_FAR_SIGMA`` px, and half ``_EXTENT_LOW`` in the pixel itself.
_FAR_RADIUS = 180
_FAR_SIGMA = 2.5
_FAR_LOW = 2.5
#: Mean darkening (CIELAB L) that makes a region away from the lesion a new spot.
_PIGMENT = 4.0
#: Mean CIEDE2000 difference below which a region is no visible change: two
#: phone photos of the same skin differ by about this much (ΔE2000 1-2 is
#: the just-noticeable difference side by side under controlled light).
_VISIBLE_DE = 3.0
#: Weight of a b* rise (browning) against a lightness drop, next to the lesion.
_BROWN_GAIN = 2.0
#: Brightening with this much chroma lost (CIELAB), or up to this lightness, is glare.
_GLARE_CHROMA_LOSS = 3.0
_GLARE_LIGHTNESS = 90.0
#: Misalignment tolerated (px) by the neighbourhood comparison.
_SLACK = 5
#: Reference long side that areas are normalised to.
_UNIT_SIDE = 640.0


@dataclass
class ChangeResult:
    """Result of :func:`detect_change` at the analysis resolution.

    Attributes
    ----------
    evidence : ndarray, shape (M, N), float32
        Per-pixel change evidence in CIELAB units.
    mask : ndarray, shape (M, N), bool
        Changed pixels.
    regions : list of dict
        One per region, largest evidence first, analysis-pixel measurements.
    features : ndarray, shape (2,), float64
        Inputs of the calibrated score: log(1 + evidence mass of the strongest
        region) and the peak of the smoothed evidence; on a phone photo with the
        learned region classifier, the logit of its highest region probability
        and the number of candidate regions.
    score : float
        Calibrated probability of a clinically relevant change.
    """

    evidence: np.ndarray
    mask: np.ndarray
    regions: list = field(default_factory=list)
    features: np.ndarray = None
    score: float = 0.0


def _spots(mask, keep):
    """Components of `mask` (uint8) that are compact and mostly inside `keep` (bool).

    Compact: area at most ``_SPOT_AREA`` times the squared widest width, and
    the second moments' long axis at most ``_SPOT_ELONGATION`` times the short
    one (hair, even a short stub, is longer than that).
    """
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    half_width = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    widest = np.zeros(n, np.float32)
    np.maximum.at(widest, labels.ravel(), half_width.ravel())
    area = np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    dx, dy = xs - centroids[lab, 0], ys - centroids[lab, 1]
    sxx, syy, sxy = (np.bincount(lab, v, minlength=n) / area for v in (dx * dx, dy * dy, dx * dy))
    spread = np.sqrt(((sxx - syy) / 2) ** 2 + sxy**2)
    major, minor = (sxx + syy) / 2 + spread, (sxx + syy) / 2 - spread
    spot = (area <= _SPOT_AREA * (2 * widest) ** 2) & (major <= _SPOT_ELONGATION**2 * np.maximum(minor, 1e-6))
    spot &= np.bincount(labels[keep], minlength=n) > area / 2
    spot[0] = False
    return spot[labels]


def _remove_thin(lab, *, keep):
    """Replace thin structures (hair, marker ink, dots) by the skin around them.

    Thin structures are what a morphological closing (dark in L, low in b*)
    or opening (high in a*) of ``_THIN`` px removes; there L takes the
    closing's value and a*, b* a median over a window more than twice that.
    Compact ones (about as long as wide) mostly in `keep` (bool, shape
    (M, N)) stay: on the skin around the lesion a small new spot is what an
    early recurrence looks like, while a line there is hair or ink.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_THIN, _THIN))
    closed = cv2.morphologyEx(lab[..., 0], cv2.MORPH_CLOSE, kernel)
    thin = (closed - lab[..., 0] > 3.0)
    thin |= lab[..., 1] - cv2.morphologyEx(lab[..., 1], cv2.MORPH_OPEN, kernel) > 3.0
    thin |= cv2.morphologyEx(lab[..., 2], cv2.MORPH_CLOSE, kernel) - lab[..., 2] > 3.0
    thin = cv2.dilate(thin.astype(np.uint8), np.ones((3, 3), np.uint8))
    thin = (thin > 0) & ~_spots(thin, keep)
    out = lab.copy()
    out[..., 0] = np.where(thin, closed, lab[..., 0])
    for c in (1, 2):
        chan = np.clip(lab[..., c] + 128, 0, 255).astype(np.uint8)
        median = cv2.medianBlur(chan, 2 * _THIN - 1).astype(np.float32) - 128
        out[..., c] = np.where(thin, median, lab[..., c])
    return out


def _remove_broad(components, valid_mask):
    """Keep compact changes, drop broad ones (top-hat per component).

    A grey opening with an element wider than any lesion change keeps what is
    broad or ramp-like (shadows, uneven light the normalisation left over)
    and removes compact bumps; subtracting it leaves the bumps. Computed at a
    quarter of the size (the opening is smooth anyway); pixels outside the
    overlap take no part, so a shadow reaching the overlap's edge is removed too.
    """
    h, w = components.shape[:2]
    size = max(5, int(round(_BROAD * max(h, w) / _UNIT_SIDE / 4)) | 1)
    shape = (max(1, w // 4), max(1, h // 4))
    small = cv2.resize(components, shape, interpolation=cv2.INTER_AREA)
    outside = cv2.resize(valid_mask.astype(np.uint8), shape, interpolation=cv2.INTER_AREA) == 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    small[outside] = 1e6
    eroded = cv2.erode(small, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1e6)
    eroded[outside] = 0
    eroded[eroded >= 1e6] = 0
    opened = cv2.dilate(eroded, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    opened = cv2.resize(opened, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.maximum(components - opened, 0)


def _not_shadow(ref, mov):
    """0-1 weight: how little a darkening looks like a shadow.

    A shadow scales the light reaching the skin, so a* and b* shrink with L;
    a new lesion, growth or blue-grey area changes the hue instead. Deep
    darkening always counts.
    """
    ref = cv2.GaussianBlur(ref, (0, 0), 2.0)
    mov = cv2.GaussianBlur(mov, (0, 0), 2.0)
    k = np.clip(mov[..., 0] / np.maximum(ref[..., 0], 1.0), 0, 1)
    residual = np.hypot(mov[..., 1] - ref[..., 1] * k, mov[..., 2] - ref[..., 2] * k)
    weight = np.clip((residual - 1.5) / 3.0, 0.15, 1.0)
    return np.where(k < _DEEP, 1.0, weight).astype(np.float32)


def _lesion_crossing(ref, mov, lesion_mask, near):
    """Evidence where skin turned into lesion: growth of a pale lesion.

    The lightness halfway between the lesion and the skin around it separates
    the two; a pixel that was clearly skin and is now clearly lesion counts
    as strongly as a clear colour change, even when the contrast is low.
    Only pixels in `near` (bool, where growth can reach) count.
    """
    ring = cv2.dilate(lesion_mask.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool) & ~lesion_mask
    if ring.sum() < 30:
        return np.zeros(lesion_mask.shape, np.float32)
    ref_l = cv2.GaussianBlur(ref[..., 0], (0, 0), 2.0)
    # Growth is lesion that spreads as a band; a closing twice the thin-line
    # size keeps such bands (they join the lesion) but clears what is left of
    # crossing or looping hairs, which a low threshold would take for lesion.
    wide = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * _THIN - 1, 2 * _THIN - 1))
    mov_l = cv2.GaussianBlur(cv2.morphologyEx(mov[..., 0], cv2.MORPH_CLOSE, wide), (0, 0), 2.0)
    # Compare with the darkest baseline value nearby: a residual shift of the
    # lesion's edge must not look like growth.
    ref_min = cv2.erode(ref_l, np.ones((2 * _SLACK - 1, 2 * _SLACK - 1), np.uint8))
    inside, outside = np.median(ref_l[lesion_mask]), np.median(ref_l[ring])
    if outside - inside < 6.0:
        return np.zeros(lesion_mask.shape, np.float32)
    threshold = (inside + outside) / 2
    margin = (outside - inside) / 6
    was_skin = np.clip((ref_min - threshold) / margin, 0, 1)
    now_lesion = np.clip((threshold - mov_l) / margin, 0, 1)
    return (_HIGH * 1.25 * was_skin * now_lesion * near).astype(np.float32)


def change_evidence(reference_lab, moving_lab, valid_mask, *, lesion_mask=None, saturated=None, clinical=False):
    """Per-pixel evidence (CIELAB units) that the follow-up became darker, bluer, redder or browner.

    Parameters
    ----------
    reference_lab, moving_lab : ndarray, shape (M, N, 3), float32
        CIELAB images in the same frame, the follow-up already normalised.
    valid_mask : ndarray, shape (M, N), bool
        Pixels both photos show.
    lesion_mask : ndarray, shape (M, N), bool, optional
        The baseline lesion; enables the skin-turned-lesion (growth) evidence.
    saturated : tuple of two ndarray, shape (M, N), bool, optional
        Baseline and follow-up pixels with a colour channel clipped at the
        camera's ceiling (:func:`registration._imageutil._saturated`).
    clinical : bool, optional
        A phone photo of skin rather than dermoscopy: a yellow rise (crust, papule) counts
        anywhere, and brightening is set aside only where it looks like glare (colour lost),
        since a pink or pearly papule brightens too. Dermoscopy keeps every brightening out.

    Returns
    -------
    evidence : ndarray, shape (M, N), float32
        Compact changes only (broad ones removed).
    components : ndarray, shape (M, N, 4), float32
        Darkening, bluing, reddening and browning separately.
    extent_evidence : ndarray, shape (M, N), float32
        The evidence before broad changes are removed: where a compact change
        ends (a large new area keeps only its edge in `evidence`).
    """
    # Outside the overlap the follow-up is black; borrowing the baseline there
    # keeps that edge from looking like (or hiding) a dark structure.
    moving_lab = np.where(valid_mask[..., None], moving_lab, reference_lab)
    # Dots and globules inside a lesion come and go between photos; small
    # new spots are looked for on the skin around it.
    skin = np.ones(valid_mask.shape, bool)
    if lesion_mask is not None and lesion_mask.any():
        skin = cv2.dilate(lesion_mask.astype(np.uint8), np.ones((2 * _SLACK + 1,) * 2, np.uint8)) == 0
    ref = _remove_thin(reference_lab, keep=skin)
    mov = _remove_thin(moving_lab, keep=skin)
    box = np.ones((_SLACK, _SLACK), np.uint8)
    darker = np.maximum(cv2.erode(ref[..., 0], box) - mov[..., 0], 0)
    redder = np.maximum(mov[..., 1] - cv2.dilate(ref[..., 1], box), 0)
    # Brown turning blue-grey loses a* and b* (hue and chroma); both count.
    bluer = np.hypot(np.maximum(cv2.erode(ref[..., 1], box) - mov[..., 1], 0),
                     np.maximum(cv2.erode(ref[..., 2], box) - mov[..., 2], 0))
    # A b* rise: pale pigment spreading over skin, weighted up in the band the lesion would
    # spread into (below) because there that rise is a few units where darkening is tens; on a
    # phone photo also a yellow crust or papule anywhere.
    yellower = np.maximum(mov[..., 2] - cv2.dilate(ref[..., 2], box), 0)
    browner = yellower * _BROWN_GAIN
    brighter = mov[..., 0] > cv2.dilate(ref[..., 0], box) + 5.0
    if clinical:
        # Glare whitens skin: brighter and less colourful (or near white) is no evidence. A
        # pink or pearly papule is brighter too, but keeps or gains colour: its reddening counts.
        ref_chroma = cv2.dilate(np.hypot(ref[..., 1], ref[..., 2]), box)
        glare = brighter & ((np.hypot(mov[..., 1], mov[..., 2]) < ref_chroma - _GLARE_CHROMA_LOSS)
                            | (mov[..., 0] >= _GLARE_LIGHTNESS))
        bluer *= ~brighter
    else:
        glare = brighter
    darker *= _not_shadow(ref, mov)
    if saturated is not None:
        # A clipped channel (skin's red first, in a bright photo) understates
        # that photo's a* and b*: a hue loss where the follow-up is clipped, or
        # a hue gain where the baseline is, is the camera's, not the skin's.
        # Lightness still counts, and the other direction only understates.
        ref_saturated, mov_saturated = saturated
        bluer *= ~mov_saturated
        redder *= ~ref_saturated
        browner *= ~ref_saturated
    if lesion_mask is not None and lesion_mask.sum() >= 30:
        radius = np.sqrt(lesion_mask.sum() / np.pi)
        outside = cv2.distanceTransform((~lesion_mask).astype(np.uint8), cv2.DIST_L2, 5)
        # Growth spreads from the lesion: a crossing counts near it (growth
        # < ~40 % in diameter), browning out to one lesion radius.
        darker = np.maximum(darker, _lesion_crossing(ref, mov, lesion_mask,
                                                     outside <= 0.5 * radius))
        browner *= (outside > 0) & (outside <= radius)
    else:
        browner[:] = 0
    if clinical:
        browner = np.maximum(browner, yellower * (~ref_saturated if saturated is not None else 1))
    components = np.stack([darker, bluer, redder, browner], axis=-1) * ~glare[..., None]
    components = cv2.GaussianBlur(components, (0, 0), 1.2)
    extent = np.sqrt((components**2).sum(axis=-1))
    components = _remove_broad(components, valid_mask)
    inner = cv2.erode(valid_mask.astype(np.uint8), np.ones((11, 11), np.uint8))
    # Morphology is unreliable at the image border (and photos often have a dark frame line).
    band = _THIN + 2
    inner[:band], inner[-band:], inner[:, :band], inner[:, -band:] = 0, 0, 0, 0
    inner = inner > 0
    components *= inner[..., None]
    evidence = np.sqrt((components**2).sum(axis=-1))
    return evidence.astype(np.float32), components, (extent * inner).astype(np.float32)


def _hysteresis(evidence, min_area, high=_HIGH, low=_LOW):
    strong = (evidence >= high).astype(np.uint8)
    weak = (evidence >= low).astype(np.uint8)
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    if n <= 1:
        return np.zeros(evidence.shape, bool)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[strong > 0])] = True
    keep[0] = False
    mask = keep[labels]
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    big = np.zeros(n, bool)
    big[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return big[labels]


def _extent(seeds, extent_evidence, unit):
    """Grow the detected changes to where they end.

    Seeds are the compact changes; a large new area keeps only its edge there
    (its middle looks broad), so each seed takes the connected pixels of the
    unfiltered evidence above ``_EXTENT_LOW`` no farther than a lesion's size
    (``_GROW_RADIUS``), those of weaker but coherent evidence out to
    ``_FAR_RADIUS`` (a darkening in blotches), and its holes.
    """
    if not seeds.any():
        return seeds
    distance = cv2.distanceTransform((~seeds).astype(np.uint8), cv2.DIST_L2, 5) * np.sqrt(unit)
    smooth = cv2.GaussianBlur(extent_evidence, (0, 0), _FAR_SIGMA / np.sqrt(unit))
    weak = ((extent_evidence >= _EXTENT_LOW) & (distance <= _GROW_RADIUS)) | seeds
    weak |= (smooth >= _FAR_LOW) & (extent_evidence >= _EXTENT_LOW / 2) & (distance <= _FAR_RADIUS)
    n, labels = cv2.connectedComponents(weak.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[seeds])] = True
    keep[0] = False
    return binary_fill_holes(keep[labels])


def _is_line(max_half_width, area, lesion_distance):
    """A long thin region away from the lesion's edge: hair or a marker line.

    A thin region hugging the lesion's edge is kept: that is how growth of a
    lesion looks.
    """
    if max_half_width > _LINE_HALF_WIDTH:
        return False
    elongation = area / (2.0 * max_half_width) ** 2
    hugging = np.mean(lesion_distance <= 2 * max_half_width + 3)
    return elongation > 6 and hugging < 0.5


def _kind(inside, touching, components):
    darker, bluer, redder, browner = components
    darker = max(darker, browner)
    if redder > max(darker, bluer):
        return "redness"
    if inside >= 0.6:
        return "darkening"
    if touching:
        return "growth"
    if darker >= _PIGMENT:
        return "new_lesion"
    return "other"


def _features(region):
    return np.array([np.log1p(region["mass"]), region["peak"]])


def score_features(features):
    """Calibrated probability of change from :class:`ChangeResult` features."""
    coef = np.asarray(CHANGE_SCORE_COEFFICIENTS["coef"])
    z = float(CHANGE_SCORE_COEFFICIENTS["intercept"] + coef @ features)
    return float(1.0 / (1.0 + np.exp(-z)))


def find_regions(reference_lab, moving_lab, evidence, components, extent_evidence, *, lesion_mask, site_mask,
                  clinical, high=_HIGH, low=_LOW):
    """Changed regions from the evidence of :func:`change_evidence` (hysteresis from `low` to `high`).

    Returns ``(mask, labels, regions, smooth)``: the changed pixels (bool (M, N)); their regions' numbers
    (int32 (M, N), 0 elsewhere); one dict per region, unsorted, with ``label`` its number; the smoothed
    evidence whose peak grades the score when no region passes.
    """
    h, w = evidence.shape
    unit = (_UNIT_SIDE / max(h, w)) ** 2
    seeds = _hysteresis(evidence, max(8, _MIN_AREA / unit), high, low)
    if not lesion_mask.any():
        outside_dist = np.full((h, w), np.inf, np.float32)
    else:
        outside_dist = cv2.distanceTransform((~lesion_mask).astype(np.uint8), cv2.DIST_L2, 5)
    # The peak of the smoothed evidence keeps the score graded when no region
    # passes the thresholds; evidence explained as a line (hair, ink) is not counted.
    smooth = cv2.GaussianBlur(evidence, (0, 0), 3.0)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(seeds.astype(np.uint8), connectivity=8)
    half_width = cv2.distanceTransform(seeds.astype(np.uint8), cv2.DIST_L2, 5)
    for i in range(1, n):
        sel = labels == i
        if _is_line(half_width[sel].max(), int(stats[i, cv2.CC_STAT_AREA]), outside_dist[sel]):
            seeds[sel] = False
            smooth[cv2.dilate(sel.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0] = 0
    mask = _extent(seeds, extent_evidence, unit)
    lesion_area = max(int(lesion_mask.sum()), 1)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    regions = []
    for i in range(1, n):
        sel = labels == i
        core = sel & seeds  # never empty: every extent grew from a seed
        values = evidence[core]
        area = int(stats[i, cv2.CC_STAT_AREA])
        x, y, bw, bh = stats[i, :4]
        inside = float(lesion_mask[sel].mean())
        dist = float(outside_dist[sel].min()) if lesion_mask.any() else float("inf")
        mean_components = components[core].mean(axis=0)
        delta_e = float(deltaE_ciede2000(reference_lab[sel], moving_lab[sel]).mean())
        # Mere browning away from the lesion's edge is no spreading lesion; a
        # new lesion darkens (or greys, or reddens) over a good part of its
        # core, if not on average over its pale rim. On a phone photo a strong yellow rise
        # (a crust) is no mere browning.
        upper = np.percentile(components[core], 75, axis=0)
        browning_only = (dist > 2.0 and upper[:3].max() < _PIGMENT
                         and (not clinical or upper[3] < 2 * _PIGMENT))
        if browning_only or delta_e < _VISIBLE_DE:
            mask[sel] = False
            smooth[sel] = 0
            continue
        kind = _kind(inside, dist <= 2.0, mean_components)
        regions.append({
            "bbox": [int(x), int(y), int(x + bw - 1), int(y + bh - 1)],
            "area_px": area,
            "growth_pct": 100.0 * area / lesion_area if kind == "growth" else None,
            "delta_e": delta_e,
            "distance_to_lesion_px": 0.0 if dist <= 2.0 else dist,
            "kind": kind,
            "mass": float(values.sum()) * unit,
            "mean_evidence": float(values.mean()),
            "peak": float(smooth[core].max()),
            "in_site": bool(site_mask is None or site_mask[sel].any()),
            "label": i,
        })
    labels[~mask] = 0
    return mask, labels, regions, smooth


def detect_change(reference_lab, moving_lab, valid_mask, *, lesion_mask=None, site_mask=None, saturated=None,
                  clinical=False, classify=None):
    """Find clinically relevant change between baseline and aligned follow-up.

    Parameters
    ----------
    reference_lab, moving_lab : ndarray, shape (M, N, 3), float32
        CIELAB images in the baseline frame, follow-up normalised
        (see :func:`registration.normalisation.normalise_colour`).
    valid_mask : ndarray, shape (M, N), bool
        Pixels both photos show.
    lesion_mask : ndarray, shape (M, N), bool, optional
        The baseline lesion or scar; used to name and measure regions.
    site_mask : ndarray, shape (M, N), bool, optional
        The watched site region; a region touching it is ``in_site`` (all are without one).
    saturated : tuple of two ndarray, shape (M, N), bool, optional
        Clipped pixels of the baseline and of the follow-up (see
        :func:`change_evidence`).
    clinical : bool, optional
        A phone photo of skin rather than dermoscopy (see :func:`change_evidence`).
    classify : callable, optional
        For a phone photo, a function with the signature of
        :func:`registration.region_classifier.classify_change` whose regions and score replace the rules'
        (the rules still name each region); None: the rules decide.

    Returns
    -------
    result : ChangeResult
    """
    if reference_lab.shape != moving_lab.shape or valid_mask.shape != reference_lab.shape[:2]:
        raise ValueError("reference_lab, moving_lab and valid_mask must share one (M, N) frame.")
    h, w = valid_mask.shape
    lesion_mask = np.zeros((h, w), bool) if lesion_mask is None else lesion_mask.astype(bool)
    evidence, components, extent_evidence = change_evidence(
        reference_lab, moving_lab, valid_mask, lesion_mask=lesion_mask, saturated=saturated, clinical=clinical)
    if clinical and classify is not None:
        mask, regions, features, score = classify(
            reference_lab, moving_lab, valid_mask, evidence, components, extent_evidence,
            lesion_mask=lesion_mask, site_mask=site_mask)
        return ChangeResult(evidence, mask, regions, features, score)
    mask, _, regions, smooth = find_regions(reference_lab, moving_lab, evidence, components, extent_evidence,
                                          lesion_mask=lesion_mask, site_mask=site_mask, clinical=clinical)
    regions.sort(key=lambda r: -r["mass"])
    for r in regions:
        r["score"] = score_features(_features(r))
    top = regions[0] if regions else {"mass": 0.0, "mean_evidence": 0.0, "peak": 0.0}
    features = _features(dict(top, peak=float(smooth.max())))
    score = score_features(features)
    return ChangeResult(evidence, mask, regions, features, score)
