"""Region crops: the same square context window for training (feedback) and inference."""
from __future__ import annotations

import cv2
import numpy as np

CONTEXT = 2.0     # crop side = CONTEXT * the bbox's longer side ...
MIN_SIDE = 48     # ... but at least this many pixels


def crop_box(bbox, shape, *, context: float = CONTEXT, min_side: int = MIN_SIDE) -> tuple[int, int, int, int]:
    """Square window (x0, y0, x1, y1), integer pixels, centred on bbox; may extend past the image."""
    x0, y0, x1, y1 = [float(v) for v in bbox]
    if x1 < x0 or y1 < y0:
        raise ValueError(f"bbox must be [x0, y0, x1, y1] with x1 >= x0 and y1 >= y0, got {bbox}")
    side = max(context * max(x1 - x0, y1 - y0), float(min_side))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ix0, iy0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    return ix0, iy0, ix0 + s, iy0 + s


def crop_region(image: np.ndarray, bbox, out_size: int, **kw) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """image uint8 (H,W,3) -> (out_size, out_size, 3) uint8 crop (edges replicated), and the window."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB uint8, got shape {image.shape}")
    box = crop_box(bbox, image.shape, **kw)
    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    c = src[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    interp = cv2.INTER_AREA if c.shape[0] > out_size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(c), (out_size, out_size), interpolation=interp), box
