"""Find the reference sticker (:mod:`registration.sticker`) in a photo: scale and colour.

:func:`detect_sticker` finds the two ArUco markers, fits the sticker-to-photo homography, and gives
the local scale in millimetres per pixel at the sticker's centre with its uncertainty, the quality
flags (too tilted, too small, curled, partly covered) and the reasons a scale cannot be used (two
stickers, another marker, a black-and-white copy). :func:`colour_correction` fits a 3x3 matrix in
linear sRGB that takes the patches as photographed to their documented values and reports the
residual CIEDE2000; :func:`apply_colour_correction` applies it to a photo. :func:`sticker_mask`
gives the pixels the sticker covers, to leave out of a comparison; :func:`sticker_covers` the share of
the scar it hides.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab

from . import sticker as design
from ._imageutil import _check_rgb

#: Largest disagreement between the two photos' markers, once the alignment's change of scale is taken
#: out, that is still one print: alignment and tilt errors stay within a few per cent (scale error p95 1.8 %).
#: A copy at another zoom or on another paper size (15 % or more) is caught; a printer's "fit to page" (3-6 %)
#: is not.
PRINT_SIZE_TOLERANCE = 0.10
#: Beyond this tilt (degrees, from the marker plane's foreshortening) the scale is not used.
MAX_TILT_DEG = 50.0
#: A marker side below this (pixels) is too small to measure.
MIN_MARKER_PX = 12.0
#: Relative scale uncertainty (1 sigma) above which the scale is not used.
MAX_SCALE_UNCERTAINTY = 0.05
#: Corner RMS residual (pixels) of the two markers under one homography above which the sticker is
#: not flat (curled) or not printed to our layout: this many pixels plus a share of the marker side
#: (flat stickers: 0.2-0.6 px; one half folded 40 degrees: 3.5 % of the side).
MAX_LAYOUT_RESIDUAL = (1.5, 0.01)
#: Corner localisation noise assumed at least (pixels, 1 sigma).
_CORNER_SIGMA_PX = 0.25
#: Skin patches' chroma (CIELAB, after a grey-balanced correction) below which the print has no colour.
_MIN_SKIN_CHROMA = 6.0

FLAGS = ("too_tilted", "too_small", "curled", "partly_covered", "two_stickers", "foreign_marker",
         "greyscale_copy")


@dataclass(frozen=True)
class StickerDetection:
    """What :func:`detect_sticker` found.

    Attributes
    ----------
    found : bool
        A sticker of ours is in the photo (at least one of its markers, confirmed).
    usable : bool
        Its scale can be used (`scale_mm_per_px` is not None).
    homography : ndarray, shape (3, 3), float64, or None
        Sticker mm (x, y, 1) -> photo pixel (x, y, 1), origin at the top-left pixel's centre.
    scale_mm_per_px : float or None
        Millimetres per photo pixel at the sticker's centre (geometric mean over directions).
    scale_uncertainty : float or None
        Relative 1-sigma uncertainty of the scale (0.01 = 1 %).
    tilt_deg : float or None
        Tilt of the sticker's plane from the foreshortening (0 = facing the camera).
    marker_px : float or None
        Mean side of the markers found, pixels.
    markers : dict of int to ndarray, shape (4, 2)
        Corners of our markers found, by id (ArUco order).
    outline : ndarray, shape (4, 2), float64, or None
        The sticker's corners in the photo.
    patches_rgb : ndarray, shape (P, 3), float64, or None
        Median linear sRGB (0-1) of each patch of :data:`registration.sticker.PATCHES`; NaN where a
        patch is outside the photo, clipped or covered.
    flags : tuple of str
        Among :data:`FLAGS`.
    reasons : tuple of str
        The flags in words, for the analysis.
    """

    found: bool
    usable: bool = False
    homography: np.ndarray = None
    scale_mm_per_px: float = None
    scale_uncertainty: float = None
    tilt_deg: float = None
    marker_px: float = None
    markers: dict = field(default_factory=dict)
    outline: np.ndarray = None
    patches_rgb: np.ndarray = None
    flags: tuple = ()
    reasons: tuple = ()


_REASONS = {
    "too_tilted": "the reference sticker is too tilted to measure; photograph it square-on",
    "too_small": "the reference sticker is too small in the photo to measure; come closer",
    "curled": "the reference sticker is not flat (curled) or not printed from our file",
    "partly_covered": "the reference sticker is partly covered",
    "two_stickers": "two reference stickers in the photo; keep one",
    "foreign_marker": "a marker that is not a Scar Watch reference sticker is in the photo",
    "greyscale_copy": "the reference sticker is a black-and-white copy; print it in colour",
}
#: Flags that leave the photo without a scale.
_NO_SCALE = {"too_tilted", "curled", "two_stickers", "foreign_marker", "greyscale_copy"}

_detector_cache = {}


def _detector():
    if "d" not in _detector_cache:
        params = cv2.aruco.DetectorParameters()
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
        params.cornerRefinementWinSize = 3
        params.minMarkerPerimeterRate = 0.02
        # one adaptive-threshold window (7 px) instead of three: a third of the time; a second
        # window (17 px) found no more stickers on the tune photos (bench/sticker_bench.py)
        params.adaptiveThreshWinSizeMin = 7
        params.adaptiveThreshWinSizeMax = 7
        params.errorCorrectionRate = 0.3  # fewer chance markers in skin texture (0.6 found no more stickers)
        # motion blur rounds the marker's corners and smears its cells: a looser polygon fit, and each
        # cell read at 8 px from its middle 40 % (tune photos, 4-7 px of blur on 60-120-px stickers:
        # 46 of 60 read instead of 40)
        params.polygonalApproxAccuracyRate = 0.05
        params.perspectiveRemovePixelPerCell = 8
        params.perspectiveRemoveIgnoredMarginPerCell = 0.3
        _detector_cache["d"] = cv2.aruco.ArucoDetector(design.aruco_dictionary(), params)
    return _detector_cache["d"]


_SRGB_TO_LINEAR = np.where(np.arange(256) / 255 <= 0.04045, np.arange(256) / 255 / 12.92,
                           ((np.arange(256) / 255 + 0.055) / 1.055) ** 2.4)


def _to_linear(image):
    """uint8 sRGB -> float linear 0-1."""
    return _SRGB_TO_LINEAR[image]


def _to_srgb(linear):
    """float linear 0-1 -> float sRGB 0-1."""
    linear = np.clip(linear, 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def _reference_linear():
    """Documented patch colours as linear sRGB, shape (P, 3)."""
    lab = np.array([[p.lab for p in design.PATCHES]], float)
    return _srgb_to_linear(lab2rgb(lab)[0])


def _srgb_to_linear(srgb):
    srgb = np.asarray(srgb, float)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _fit(mm_points, px_points):
    H, _ = cv2.findHomography(np.asarray(mm_points, np.float64), np.asarray(px_points, np.float64), 0)
    return H


def _project(H, pts):
    return cv2.perspectiveTransform(np.asarray(pts, np.float64)[None], H)[0]


def _scale_uncertainty(mm_pts, px_pts, sigma):
    """Relative 1-sigma uncertainty of the centre scale for independent corner noise `sigma` (px)."""
    base = design.local_scale(_fit(mm_pts, px_pts))
    grads = []
    eps = 0.05
    for k in range(px_pts.size):
        moved = px_pts.astype(np.float64).copy().ravel()
        moved[k] += eps
        grads.append((design.local_scale(_fit(mm_pts, moved.reshape(-1, 2))) - base) / eps)
    return float(sigma * np.linalg.norm(grads) / base)


def _sample_patches(image, H):
    """Median linear RGB of each patch's central part; NaN where outside, clipped or covered."""
    h, w = image.shape[:2]
    out = np.full((len(design.PATCHES), 3), np.nan)
    for k, patch in enumerate(design.PATCHES):
        x, y, pw, ph = patch.rect_mm
        inner = np.array([[x + 0.25 * pw, y + 0.25 * ph], [x + 0.75 * pw, y + 0.25 * ph],
                          [x + 0.75 * pw, y + 0.75 * ph], [x + 0.25 * pw, y + 0.75 * ph]])
        poly = _project(H, inner)
        x0, y0 = np.floor(poly.min(0)).astype(int)
        x1, y1 = np.ceil(poly.max(0)).astype(int) + 1
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, np.round((poly - [x0, y0]) * 4).astype(np.int32), 1, cv2.LINE_8, 2)
        pixels = _to_linear(image[y0:y1, x0:x1][mask > 0])
        if len(pixels) == 0:
            pixels = _to_linear(image[int(round(poly[:, 1].mean())), int(round(poly[:, 0].mean()))][None])
        if pixels.max() >= 0.985:  # clipped at the camera's ceiling
            continue
        med = np.median(pixels, axis=0)
        spread = np.median(np.abs(pixels - med), axis=0)
        if len(pixels) >= 9 and spread.max() > 0.08 + 0.1 * med.max():  # something lies on it
            continue
        out[k] = med
    return out


def _grey_ramp_ok(patches):
    """A confirmed sticker: the grey ramp's brightness falls from patch to patch, and the greys are
    nearer neutral than the skin tones (ratios, so any cast or exposure passes)."""
    greys = patches[list(design.GREY_PATCHES)]
    valid = ~np.isnan(greys[:, 0])
    if valid.sum() < 3:
        return False
    lum = greys[valid].mean(axis=1)
    return bool(np.all(np.diff(lum) < 0))


def _skin_chroma(patches):
    """Chroma of the skin patches after balancing on the greys (NaN without enough patches)."""
    greys = patches[list(design.GREY_PATCHES)]
    ref = _reference_linear()
    valid = ~np.isnan(greys[:, 0])
    skins = patches[list(design.SKIN_PATCHES)]
    svalid = ~np.isnan(skins[:, 0])
    if valid.sum() < 2 or svalid.sum() < 2:
        return np.nan
    m, r = greys[valid], ref[list(design.GREY_PATCHES)][valid]
    gains = (m * r).sum(0) / np.maximum((m * m).sum(0), 1e-9)
    lab = rgb2lab(_to_srgb(skins[svalid] * gains)[None])[0]
    return float(np.median(np.hypot(lab[:, 1], lab[:, 2])))


def detect_sticker(image):
    """Find the reference sticker and measure the scale at it.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
        RGB photo.

    Returns
    -------
    detection : StickerDetection
        ``found=False`` when no sticker of ours is in the photo. With ``usable=False`` the photo has
        no scale; `reasons` say why.
    """
    image = _check_rgb(image, "image")
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    corners, ids, _ = _detector().detectMarkers(gray)
    if ids is None:
        return StickerDetection(found=False)
    ids = ids.ravel().tolist()
    corners = [c.reshape(4, 2).astype(np.float64) for c in corners]
    ours = [(i, c) for i, c in zip(ids, corners) if i in design.MARKER_IDS]
    foreign = [c for i, c in zip(ids, corners) if i not in design.MARKER_IDS]
    if not ours:
        return StickerDetection(found=False)
    flags = set()
    if len({i for i, _ in ours}) < len(ours):
        flags.add("two_stickers")
    markers = {}
    for i, c in ours:
        markers.setdefault(i, c)
    mm_pts = np.concatenate([design.marker_corners_mm(design.MARKER_IDS.index(i)) for i in markers])
    px_pts = np.concatenate(list(markers.values()))
    H = _fit(mm_pts, px_pts)
    if H is None or not np.all(np.isfinite(H)):
        return StickerDetection(found=False)
    sides = [np.linalg.norm(c - np.roll(c, -1, axis=0), axis=1).mean() for c in markers.values()]
    marker_px = float(np.mean(sides))
    residual = float(np.sqrt(np.mean(np.sum((_project(H, mm_pts) - px_pts) ** 2, axis=1))))
    patches = _sample_patches(image, H)
    if len(markers) == 1 and not _grey_ramp_ok(patches):
        # one marker alone, and no grey ramp where the sticker's would be: a chance match in texture
        if "two_stickers" not in flags:
            return StickerDetection(found=False)
    if len(markers) < 2:
        flags.add("partly_covered")
    if len(markers) == 2 and residual > MAX_LAYOUT_RESIDUAL[0] + MAX_LAYOUT_RESIDUAL[1] * marker_px:
        flags.add("curled")
    if np.isnan(patches[:, 0]).sum() > len(design.PATCHES) // 2 and "partly_covered" not in flags:
        w, h = gray.shape[::-1]
        outline = _project(H, [[0, 0], [40, 0], [40, 25], [0, 25]])
        if outline.min() >= 0 and outline[:, 0].max() < w and outline[:, 1].max() < h:
            flags.add("partly_covered")
    for c in foreign:  # another ArUco marker of a size like ours: another kind of sticker
        side = np.linalg.norm(c - np.roll(c, -1, axis=0), axis=1).mean()
        if side > 0.5 * marker_px:
            flags.add("foreign_marker")
    scale = design.local_scale(H)
    jac = design._jacobian(H)
    sv = np.linalg.svd(jac, compute_uv=False)
    tilt = float(np.degrees(np.arccos(np.clip(sv[1] / sv[0], 0, 1))))
    if tilt > MAX_TILT_DEG:
        flags.add("too_tilted")
    sigma = max(_CORNER_SIGMA_PX, residual if len(markers) == 2 else 0.0)
    uncertainty = _scale_uncertainty(mm_pts, px_pts, sigma)
    if marker_px < MIN_MARKER_PX or uncertainty > MAX_SCALE_UNCERTAINTY:
        flags.add("too_small")
    chroma = _skin_chroma(patches)
    if np.isfinite(chroma) and chroma < _MIN_SKIN_CHROMA:
        flags.add("greyscale_copy")
    usable = not (flags & _NO_SCALE) and "too_small" not in flags
    outline = _project(H, [[0, 0], [design.STICKER_SIZE_MM[0], 0], list(design.STICKER_SIZE_MM),
                           [0, design.STICKER_SIZE_MM[1]]])
    ordered = tuple(f for f in FLAGS if f in flags)
    return StickerDetection(
        found=True, usable=usable, homography=H, scale_mm_per_px=scale if usable else None,
        scale_uncertainty=uncertainty, tilt_deg=tilt, marker_px=marker_px, markers=markers,
        outline=outline, patches_rgb=patches, flags=ordered,
        reasons=tuple(_REASONS[f] for f in ordered))


@dataclass(frozen=True)
class ColourCorrection:
    """A colour correction from the sticker's patches (:func:`colour_correction`).

    Attributes
    ----------
    matrix : ndarray, shape (3, 3), float64
        Linear sRGB as photographed (column vector) -> linear sRGB of the documented colours.
    delta_e : ndarray, shape (P,), float64
        CIEDE2000 of each patch after correction against its documented CIELAB value (NaN where the
        patch was not sampled).
    median_delta_e : float
    usable : bool
    reasons : tuple of str
    """

    matrix: np.ndarray
    delta_e: np.ndarray
    median_delta_e: float
    usable: bool
    reasons: tuple = ()


def colour_correction(detection, *, ridge=0.05):
    """Fit the colour correction to the sticker's patches.

    A diagonal white balance on the grey ramp, then a full 3x3 matrix in linear sRGB fitted on all
    patches by least squares, pulled toward that diagonal by a ridge (greys and skin tones alone
    leave the blue-green direction weakly determined).

    Parameters
    ----------
    detection : StickerDetection
        From :func:`detect_sticker`, with ``found`` True.
    ridge : float, keyword-only
        Weight of the pull toward the diagonal, relative to the patches' total energy.

    Returns
    -------
    correction : ColourCorrection
    """
    if not isinstance(detection, StickerDetection) or not detection.found:
        raise ValueError("colour_correction needs a StickerDetection with a sticker found.")
    ref = _reference_linear()
    measured = detection.patches_rgb
    valid = ~np.isnan(measured[:, 0])
    greys = np.array([k in design.GREY_PATCHES for k in range(len(ref))])
    reasons = []
    if "greyscale_copy" in detection.flags:
        reasons.append(_REASONS["greyscale_copy"])
    if (valid & greys).sum() < 2 or valid.sum() < 4:
        eye = np.eye(3)
        return ColourCorrection(eye, _delta_e(measured, eye), float("nan"), False,
                                tuple(reasons + ["too few colour patches of the sticker are visible"]))
    m, r = measured[valid & greys], ref[valid & greys]
    gains = (m * r).sum(0) / np.maximum((m * m).sum(0), 1e-9)
    D = np.diag(gains)
    A, B = measured[valid], ref[valid]
    lam = ridge * float((A * A).sum())
    M = np.linalg.solve(A.T @ A + lam * np.eye(3), A.T @ B + lam * D.T).T
    delta = _delta_e(measured, M)
    med = float(np.nanmedian(delta))
    usable = not reasons
    return ColourCorrection(M, delta, med, usable, tuple(reasons))


def _delta_e(measured, M):
    ref_lab = np.array([p.lab for p in design.PATCHES], float)
    out = np.full(len(ref_lab), np.nan)
    valid = ~np.isnan(measured[:, 0])
    if valid.any():
        corrected = _to_srgb(measured[valid] @ M.T)
        out[valid] = deltaE_ciede2000(rgb2lab(corrected[None])[0], ref_lab[valid])
    return out


def apply_colour_correction(image, correction):
    """Apply `correction` to a photo.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
    correction : ColourCorrection

    Returns
    -------
    corrected : ndarray, shape (M, N, 3), uint8
    """
    image = _check_rgb(image, "image")
    M = np.asarray(correction.matrix, np.float32)
    linear = _SRGB_TO_LINEAR.astype(np.float32)[image]
    out = linear.reshape(-1, 3) @ M.T
    levels = np.clip(out * 4095, 0, 4095).astype(np.int32)
    lut = np.round(_to_srgb(np.arange(4096) / 4095) * 255).astype(np.uint8)
    return lut[levels].reshape(image.shape)


def sticker_mask(shape, detection, *, margin_mm=1.0):
    """Pixels the sticker covers, with a margin, to leave out of a comparison.

    Parameters
    ----------
    shape : tuple
        The photo's shape, (M, N) or (M, N, 3).
    detection : StickerDetection
    margin_mm : float, keyword-only

    Returns
    -------
    mask : ndarray, shape (M, N), bool
        All False without a sticker.
    """
    h, w = shape[:2]
    mask = np.zeros((h, w), np.uint8)
    if detection.found and detection.homography is not None:
        W, Hh = design.STICKER_SIZE_MM
        m = margin_mm
        poly = _project(detection.homography, [[-m, -m], [W + m, -m], [W + m, Hh + m], [-m, Hh + m]])
        cv2.fillConvexPoly(mask, np.round(poly * 16).astype(np.int32), 1, cv2.LINE_8, 4)
    return mask > 0


def sticker_covers(outline, detection, homography=None):
    """The share of a region (the scar's outline) that the sticker covers.

    Parameters
    ----------
    outline : ndarray, shape (M, N), bool
        The region, in the reference photo.
    detection : StickerDetection
        :func:`detect_sticker` of the moving photo (or of the reference itself, with `homography` None).
    homography : array_like, shape (3, 3), optional
        Moving pixel (x, y, 1) -> reference pixel, as :func:`registration.analyze_pair` gives it; None: the
        detection is of the reference photo.

    Returns
    -------
    share : float
        0-1; 0 without a sticker or an empty outline.
    """
    outline = np.asarray(outline, bool)
    if not detection.found or detection.homography is None or not outline.any():
        return 0.0
    W, Hh = design.STICKER_SIZE_MM
    poly = _project(detection.homography, [[0, 0], [W, 0], [W, Hh], [0, Hh]])
    if homography is not None:
        poly = _project(np.asarray(homography, float), poly)
    mask = np.zeros(outline.shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(poly * 16).astype(np.int32), 1, cv2.LINE_8, 4)
    return float((outline & (mask > 0)).sum() / outline.sum())


def _area_factor(homography, point):
    """sqrt(|det J|) of `homography` at `point` (x, y): how many target pixels one source pixel spans."""
    H = np.asarray(homography, float)
    x, y = float(point[0]), float(point[1])
    v = H @ np.array([x, y, 1.0])
    jac = np.array([[H[0, 0] * v[2] - v[0] * H[2, 0], H[0, 1] * v[2] - v[0] * H[2, 1]],
                    [H[1, 0] * v[2] - v[1] * H[2, 0], H[1, 1] * v[2] - v[1] * H[2, 1]]]) / v[2] ** 2
    return float(np.sqrt(abs(np.linalg.det(jac))))


def pair_scale(reference_detection, moving_detection, homography):
    """The scale of a baseline/follow-up pair: the follow-up's own marker, or the baseline's carried
    through the alignment.

    Parameters
    ----------
    reference_detection, moving_detection : StickerDetection
        :func:`detect_sticker` of the baseline and of the follow-up.
    homography : array_like, shape (3, 3), or None
        Follow-up pixel (x, y, 1) -> baseline pixel, as :func:`registration.analyze_pair` gives it.

    Returns
    -------
    scale : dict
        ``moving_mm_per_px`` (follow-up pixels at the sticker, or None), ``reference_mm_per_px`` (baseline
        pixels, or None), ``source`` (``'marker'`` or None) and ``reasons`` (list of str: why there is no
        scale, or where it came from).
    """
    ref_ok = reference_detection.usable
    mov_ok = moving_detection.usable
    H = None if homography is None else np.asarray(homography, float)
    reasons = list(moving_detection.reasons)
    out = {"moving_mm_per_px": None, "reference_mm_per_px": None, "source": None, "reasons": reasons}
    if mov_ok:
        out["moving_mm_per_px"] = moving_detection.scale_mm_per_px
        out["source"] = "marker"
        centre = _project(moving_detection.homography, [design.sticker_centre_mm()])[0]
        if ref_ok:
            out["reference_mm_per_px"] = reference_detection.scale_mm_per_px
            if H is not None:
                # Both markers measured: the alignment says how their scales must relate. A print at
                # another size (a printer's "fit to page", a home copy) breaks that relation.
                expected = reference_detection.scale_mm_per_px * _area_factor(H, centre)
                ratio = moving_detection.scale_mm_per_px / expected
                if abs(ratio - 1) > PRINT_SIZE_TOLERANCE:
                    reasons.append(f"the stickers in the two photos measure {abs(ratio - 1):.0%} apart: one is "
                                   "printed at the wrong size — use the clinic's print (check it against a ruler: "
                                   f"{design.STICKER_SIZE_MM[0]:g} mm wide)")
                    out.update(moving_mm_per_px=None, reference_mm_per_px=None, source=None)
        elif H is not None:
            # one baseline pixel spans 1 / factor follow-up pixels there
            out["reference_mm_per_px"] = moving_detection.scale_mm_per_px / _area_factor(H, centre)
    elif ref_ok:
        out["reference_mm_per_px"] = reference_detection.scale_mm_per_px
        out["source"] = "marker"
        if H is not None:
            centre_ref = _project(reference_detection.homography, [design.sticker_centre_mm()])[0]
            centre = _project(np.linalg.inv(H), [centre_ref])[0]
            out["moving_mm_per_px"] = reference_detection.scale_mm_per_px * _area_factor(H, centre)
        if not moving_detection.found:
            reasons.append("no reference sticker in the follow-up photo; the scale comes from the baseline's "
                           "through the alignment — keep the sticker beside the scar next time")
    if out["source"] is None:
        reasons.append("no scale in this photo")
    return out
