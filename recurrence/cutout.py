"""The lesion cut-out the model was trained on, made from a whole phone photo.

The smartphone images in training are PAD-UFES-20 cut-outs: the lesion's bounding box with everything outside
its outline set to black. A whole phone photo (the lesion somewhere in a field of skin, clothing and room) is
another kind of input, and scoring it as it is lowers the ranking (validation patients' full photos: AUC 0.893
as they are, 0.914 cut out from the outline found here; `python -m bench.phone_lesions`). So a clinical photo
that is not already a cut-out is cut out first: from its mask when one is given, else from the outline
:func:`registration.propose_site` finds. Dermoscopy images were trained whole and stay whole.

Only a photo *declared* clinical is cut out. The dark-corner modality detector cannot tell a dermoscopy
close-up without vignetting from a phone photo (it calls 337 of the 366 ISIC validation images clinical), and
cutting those out drops their AUC from 0.902 to 0.660; so an undeclared image is scored whole, as before.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from registration import propose_site
from registration.modality import CLINICAL, MODALITIES

#: A photo with at least this share of pure-black pixels along its border is a cut-out already.
CUTOUT_BORDER_BLACK = 0.25
#: Components of a found outline are weighed by area / (1 + this x distance from the centre, in image
#: sizes): people centre what they photograph, and a larger mole off-centre beats a speck in the middle.
CENTRE_WEIGHT = 4.0


def is_cutout(image: np.ndarray) -> bool:
    """True when `image` (H, W, 3) uint8 already has its background blacked out around the lesion."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return float((border.max(axis=1) == 0).mean()) >= CUTOUT_BORDER_BLACK


def _main_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask
    h, w = mask.shape
    index = np.arange(1, n + 1)
    areas = ndi.sum(mask, labels, index)
    cy, cx = np.array(ndi.center_of_mass(mask, labels, index)).T
    distance = np.hypot(cy / h - 0.5, cx / w - 0.5)
    return labels == index[np.argmax(areas / (1 + CENTRE_WEIGHT * distance))]


def lesion_cutout(image: np.ndarray, *, mask: np.ndarray | None = None,
                  modality: str | None = None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The image and mask to score, and how they were made.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        An RGB lesion image: a cut-out, a dermoscopy image or a whole clinical (phone) photo.
    mask : ndarray, shape (H, W), bool, optional
        The lesion, when known.
    modality : {'clinical', 'dermoscopy'}, optional
        How the image was taken, as the uploader declares it; None: not declared, scored whole.

    Returns
    -------
    image : ndarray, shape (h, w, 3), uint8
        The cut-out (the lesion's bounding box, black outside the lesion) or the input unchanged.
    mask : ndarray, shape (h, w), bool, or None
        The lesion within the returned image (None when unknown).
    how : str
        ``'as_given'`` (a cut-out, dermoscopy or undeclared: scored whole), ``'mask'`` (cut out from the
        given mask), ``'found'`` (cut out from the outline found) or ``'not_found'`` (a phone photo in which
        no lesion stands out, scored whole).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if mask is not None and np.shape(mask) != image.shape[:2]:
        raise ValueError(f"mask must be {image.shape[:2]}, got {np.shape(mask)}")
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES} or None, got {modality!r}")
    if modality != CLINICAL or is_cutout(image):
        return image, mask, "as_given"
    how = "mask"
    if mask is None or not np.any(mask):
        mask, how = propose_site(image, modality=CLINICAL), "found"
        if not mask.any():
            return image, None, "not_found"
    mask = _main_component(np.asarray(mask, bool))
    ys, xs = np.nonzero(mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    cut, cut_mask = image[box].copy(), mask[box]
    cut[~cut_mask] = 0
    return cut, cut_mask, how
