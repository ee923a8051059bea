"""Photo quality check: can this follow-up photo be analysed at all?

Every reason is phrased so that the patient can act on it.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

from ._imageutil import _analysis_scale, _check_rgb, _field_mask, _resize

#: Smallest short side (px) that still shows enough detail.
_MIN_SIDE = 128
#: Long side (px) sharpness is measured at: coarse enough that sensor noise and
#: slight softness do not count, fine enough that blur hiding a 2 mm spot does.
_SHARPNESS_SIDE = 256
#: Sharpness (RMS Laplacian at that size) below this is blurred.
_MIN_SHARPNESS = 6.0
_MIN_BRIGHTNESS = 45
#: Share of the field that is saturated white: above _MAX_GLARE glare, above _MAX_CLIPPED over-exposed.
_MAX_GLARE = 0.15
_MAX_CLIPPED = 0.4
_MIN_FIELD = 0.25
#: Share of a phone photo that must be skin for it to be a photo of the site at all.
_MIN_SKIN = 0.08
#: Below this alignment confidence the follow-up may show another site.
_MIN_SAME_SITE = 0.15

REASONS = {
    "tiny": "the photo is too small — send the original photo from the camera, not a thumbnail",
    "blur": "the photo is blurred — hold the phone still, tap the screen to focus and retake",
    "dark": "too dark — turn on a light or move near a window",
    "bright": "too bright or washed out — move away from direct light and turn the flash off",
    "glare": "shiny glare hides the skin — tilt the phone slightly or turn the flash off",
    "framing": "the skin fills too little of the photo — move closer so the scar fills the frame",
    "black": "the photo is almost black — uncover the lens and make sure the scar is in view",
    "same_photo": "this is the same photo as the baseline — please take a new photo today",
    "other_site": "this does not look like the same spot as your first photo — "
                  "photograph the same scar, from about the same distance",
    "overlap": "only part of the scar is in the photo — centre the scar and retake",
    "not_skin": "this photo does not seem to show skin — photograph the scar itself, close up, "
                "with the skin around it filling the frame",
}


@dataclass
class Quality:
    """Result of :func:`assess_quality`.

    Attributes
    ----------
    usable : bool
        False when the photo should be retaken (or reviewed by a person).
    reasons : list of str
        Patient-facing reasons, empty when usable.
    metrics : dict
        The measured values (``sharpness``, ``brightness``, ``clipped``,
        ``field``, ...).
    """

    usable: bool
    reasons: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def _sharpness(image):
    """RMS Laplacian inside the field at a fixed long side (`image` at least that big)."""
    small = _resize(image, _analysis_scale(image.shape, _SHARPNESS_SIDE))
    mask = _field_mask(small)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F, ksize=3)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    if inner.sum() < 100:
        return 0.0
    return float(np.sqrt(np.mean(lap[inner] ** 2)))


def _measure(image, field_mask=None):
    scale = _analysis_scale(image.shape, 512)
    small = _resize(image, scale)
    photographed = _field_mask(small)
    field = photographed
    if field_mask is not None:
        field = photographed & (cv2.resize(np.asarray(field_mask).astype(np.uint8), field.shape[::-1],
                                           interpolation=cv2.INTER_NEAREST) > 0)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    inside = grey[field] if field.any() else grey.ravel()
    return {
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "photographed": float(photographed.mean()),
        "field": float(field.mean()),
        "brightness": float(np.median(inside)),
        "clipped": float(np.mean(small[field].min(axis=1) >= 250)) if field.any() else 0.0,
        "sharpness": _sharpness(small),
    }


def _same_photo(reference_image, image, alignment):
    """The baseline itself sent again (possibly re-saved), not a new photo."""
    if reference_image.shape == image.shape and np.array_equal(reference_image, image):
        return True
    if alignment is None or not alignment.registered or reference_image.shape != image.shape:
        return False
    h, w = image.shape[:2]
    corners = np.array([[0, w - 1, 0, w - 1], [0, 0, h - 1, h - 1], [1, 1, 1, 1]], float)
    moved = alignment.homography @ corners
    if np.abs(moved[:2] / moved[2] - corners[:2]).max() > 0.5:
        return False
    # A new capture from the very same spot still differs by sensor noise.
    a = cv2.cvtColor(_resize(reference_image, _analysis_scale(image.shape, 256)), cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(_resize(image, _analysis_scale(image.shape, 256)), cv2.COLOR_RGB2GRAY)
    return float(np.mean(np.abs(a.astype(np.float32) - b))) < 1.5


def assess_quality(image, *, reference_image=None, alignment=None, field_mask=None):
    """Decide whether a photo can be analysed, with patient-facing reasons.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
        The (follow-up) RGB photo.
    reference_image : ndarray, shape (P, Q, 3), uint8, optional
        The baseline photo of the same site; enables the identical-photo check.
    alignment : registration.alignment.Alignment, optional
        Alignment of `image` to `reference_image`, when already computed; its
        confidence and overlap feed the same-site check.
    field_mask : ndarray, shape (P, Q), bool, optional
        What the photo shows of the patient (the skin of a phone photo, at any size); by default
        the photographed field (all but a dermoscope's black surround).

    Returns
    -------
    quality : Quality
    """
    image = _check_rgb(image, "image")
    metrics = _measure(image, field_mask)
    keys = []
    if min(image.shape[:2]) < _MIN_SIDE:
        keys.append("tiny")
    if metrics["photographed"] < 0.02 or metrics["brightness"] < 12:
        keys.append("black")
    elif field_mask is not None and metrics["field"] < _MIN_SKIN:
        keys.append("not_skin")
    else:
        if metrics["brightness"] < _MIN_BRIGHTNESS:
            keys.append("dark")
        if metrics["clipped"] > _MAX_CLIPPED:
            keys.append("bright")
        elif metrics["clipped"] > _MAX_GLARE:
            keys.append("glare")
        if metrics["field"] < _MIN_FIELD:
            keys.append("framing")
        if metrics["sharpness"] < _MIN_SHARPNESS:
            keys.append("blur")
    if reference_image is not None:
        reference_image = _check_rgb(reference_image, "reference_image")
    if reference_image is not None and _same_photo(reference_image, image, alignment):
        keys.append("same_photo")
    if alignment is not None and not {"black", "not_skin"} & set(keys):
        metrics["alignment_confidence"] = alignment.confidence
        metrics["overlap"] = alignment.overlap
        if not alignment.registered or alignment.confidence < _MIN_SAME_SITE:
            keys.append("other_site")
        elif alignment.overlap < 0.4:
            keys.append("overlap")
    reasons = [REASONS[k] for k in dict.fromkeys(keys)]
    return Quality(usable=not reasons, reasons=reasons, metrics=metrics)
