"""Small shared helpers: input checks, analysis-resolution scaling, field masks."""

import cv2
import numpy as np

#: Long side, in pixels, of the working copy every analysis stage uses ...
ANALYSIS_LONG_SIDE = 640
#: ... and the least it is brought up to (a 300-px phone picture): below it, a small spot is
#: too few pixels for the comparison's filters, whose sizes are in pixels.
MIN_ANALYSIS_SIDE = 480
#: ... when its long side is at least this: a thumbnail (a 180-px dermoscopy image) holds no
#: detail that more pixels would show, and enlarged, its dots and re-capture differences pass the
#: filters as structure (real re-captures of such images: 5 % flagged as they are, 24 % enlarged).
MIN_UPSCALED_SIDE = 256

#: Below this value (0-255, max over channels) a pixel is outside the photographed field.
_FIELD_LEVEL = 18
#: Border-connected areas darker than this share of the centre are a dermoscope's
#: vignetting: outside the field for finding the lesion ...
VIGNETTE = 0.5
#: ... and, with a wider margin, for comparing two photos: in the vignetting's
#: steep fall-off a sub-pixel shift or a change of light is a large colour difference.
VIGNETTE_COMPARE = 0.6
#: A channel at or above this (0-255) is clipped at the camera's ceiling.
_SATURATION_LEVEL = 250


def _check_rgb(image, name):
    """Return `image` as a C-contiguous uint8 RGB array or raise ValueError."""
    if image is None:
        raise ValueError(f"{name} is None; pass the photo as an RGB uint8 array.")
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(
            f"{name} has dtype {image.dtype}; pass an 8-bit RGB photo (uint8)."
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{name} has shape {image.shape}; pass an RGB photo of shape (M, N, 3)."
        )
    if min(image.shape[:2]) < 16:
        raise ValueError(
            f"{name} is only {image.shape[1]}x{image.shape[0]} pixels; "
            "take the photo at full camera resolution."
        )
    return np.ascontiguousarray(image)


def _analysis_scale(shape, long_side=ANALYSIS_LONG_SIDE, *, upscale=False):
    """Scale factor that brings `shape` down to `long_side` (never up), or with `upscale`
    also a photo smaller than ``MIN_ANALYSIS_SIDE`` up to that size (not a thumbnail smaller
    than ``MIN_UPSCALED_SIDE``)."""
    scale = min(1.0, long_side / max(shape[:2]))
    if upscale and max(shape[:2]) >= MIN_UPSCALED_SIDE:
        scale = max(scale, MIN_ANALYSIS_SIDE / max(shape[:2]))
    return scale


def _resize(image, scale, interpolation=None):
    """`image` scaled by `scale` (area averaging down, bilinear up, unless `interpolation`)."""
    if scale == 1.0:
        return image
    if interpolation is None:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=interpolation)


def _scale_matrix(scale_x, scale_y=None):
    """Pixel-centre-exact map from full-resolution to resized coordinates.

    With the origin at the top-left pixel's centre, resizing by `s` sends x to
    (x + 0.5) * s - 0.5.
    """
    scale_y = scale_x if scale_y is None else scale_y
    return np.array(
        [
            [scale_x, 0.0, 0.5 * scale_x - 0.5],
            [0.0, scale_y, 0.5 * scale_y - 0.5],
            [0.0, 0.0, 1.0],
        ]
    )


def _resize_matrix(full_shape, small_shape):
    """Matrix mapping full-resolution pixel coordinates to a resized copy's."""
    return _scale_matrix(
        small_shape[1] / full_shape[1], small_shape[0] / full_shape[0]
    )


def _field_mask(image, *, relative=None):
    """Bool mask of the photographed field (excludes the black dermoscope surround).

    Only dark areas connected to the image border count as outside, so a dark
    lesion in the middle of the photo stays inside the field. With `relative`,
    border-connected areas darker than that share of the central brightness
    (a dermoscope's vignetting) are outside too.
    """
    # Channel-wise maximum; numpy's max over a length-3 last axis is slow.
    level = (np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])
             if image.ndim == 3 else image)
    level = cv2.blur(level, (5, 5))
    threshold = _FIELD_LEVEL
    if relative is not None:
        h, w = level.shape
        centre = level[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
        threshold = max(threshold, relative * float(np.median(centre)))
    dark = (level < threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
    h, w = dark.shape
    outside = np.zeros(n, bool)
    for i in range(1, n):
        x, y, bw, bh, _ = stats[i]
        outside[i] = x == 0 or y == 0 or x + bw == w or y + bh == h
    return ~outside[labels]


def _saturated(image):
    """Bool mask, shape (M, N), of pixels with a channel clipped at the ceiling.

    Their neighbours count too: blur and JPEG spread a clipped area's edge.
    `image` is RGB uint8, shape (M, N, 3).
    """
    level = np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])
    clipped = (level >= _SATURATION_LEVEL).astype(np.uint8)
    return cv2.dilate(clipped, np.ones((3, 3), np.uint8)) > 0


def _homography_is_sane(matrix, *, max_scale=4.0):
    """Reject degenerate, mirrored or wildly scaled homographies."""
    if matrix is None or not np.all(np.isfinite(matrix)):
        return False
    matrix = matrix / matrix[2, 2]
    det = np.linalg.det(matrix[:2, :2])
    if not (1.0 / max_scale**2 < det < max_scale**2):
        return False
    return bool(np.abs(matrix[2, :2]).max() < 0.004)
