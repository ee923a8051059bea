"""Dermoscopy or a clinical (phone) photo?

A dermoscope lights the skin through a lens pressed on it: its photo is a bright field that falls
off towards dark corners (or a black surround). A phone photo of skin is lit by the room or the
flash and its corners are about as bright as its middle. Only dermoscopy gets the dermoscopy
rules (a field with vignetting left out of the comparison).
"""

import numpy as np

from ._imageutil import _analysis_scale, _check_rgb, _resize

DERMOSCOPY = "dermoscopy"
CLINICAL = "clinical"
MODALITIES = (CLINICAL, DERMOSCOPY)
#: All four corners below this share of the centre's bright level (its 90th percentile, so that
#: a dark lesion filling the centre does not count): a dermoscope's field. Measured on
#: shared/data: 0.4 % of the real phone photos of skin fall below 0.6, 85 % of PH2 dermoscopy.
_CORNER_SHARE = 0.6


def detect_modality(image):
    """Tell a dermoscopy image from a clinical photo.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8

    Returns
    -------
    modality : {'dermoscopy', 'clinical'}
        Dermoscopy when all four corners are much darker than the centre (vignetting or the black
        surround of a dermoscope); clinical otherwise, which is also the safe reading of a
        dermoscopy image without vignetting (it is all skin).
    """
    image = _check_rgb(image, "image")
    small = _resize(image, _analysis_scale(image.shape, 256))
    level = np.maximum(np.maximum(small[..., 0], small[..., 1]), small[..., 2]).astype(np.float32)
    h, w = level.shape
    k = max(3, h // 12)
    centre = float(np.percentile(level[h // 4: 3 * h // 4, w // 4: 3 * w // 4], 90))
    corners = [level[:k, :k], level[:k, -k:], level[-k:, :k], level[-k:, -k:]]
    brightest = max(float(np.median(c)) for c in corners)
    return DERMOSCOPY if brightest < _CORNER_SHARE * max(centre, 1.0) else CLINICAL
