"""Changed regions in millimetres: a pair's scale (:func:`registration.sticker_detect.pair_scale`, or one
a clinic measured) turns the pipeline's pixel figures and sentences into sizes a clinician reads.

Pure: regions are the dicts :func:`registration.analyze_pair` returns (reference pixels).
"""

import math

import numpy as np

from .describe import describe_changes

__all__ = ["carry_scale", "reasons_in_mm", "region_mm", "scale_from_length"]


def region_mm(region, mm_per_px):
    """A region's figures in mm.

    Parameters
    ----------
    region : dict
        A region of :func:`registration.analyze_pair` (``area_px``, ``distance_to_lesion_px``; reference pixels).
    mm_per_px : float or None
        Millimetres per reference pixel; None without a scale.

    Returns
    -------
    mm : dict
        ``area_mm2``, ``diameter_mm`` (of the circle of the region's area) and ``distance_to_scar_mm``
        (None when the distance is unknown); all None without a scale.
    """
    if mm_per_px is None:
        return {"area_mm2": None, "diameter_mm": None, "distance_to_scar_mm": None}
    area = float(region["area_px"]) * mm_per_px**2
    distance = region.get("distance_to_lesion_px")
    distance = None if distance is None or not math.isfinite(distance) else round(float(distance) * mm_per_px, 2)
    return {"area_mm2": round(area, 2), "diameter_mm": round(2 * math.sqrt(area / math.pi), 2),
            "distance_to_scar_mm": distance}


def reasons_in_mm(reasons, regions, mm_per_px):
    """The pipeline's sentences about changed regions, said in millimetres.

    Parameters
    ----------
    reasons : list of str
        :attr:`registration.PairAnalysis.reasons`.
    regions : list of dict
        :attr:`registration.PairAnalysis.regions` (reference pixels).
    mm_per_px : float or None
        Millimetres per reference pixel; None leaves `reasons` as they are.

    Returns
    -------
    reasons : list of str
        The sentences :func:`registration.describe.describe_changes` made of `regions`, which lead `reasons`,
        made again with the scale; the other sentences unchanged.
    """
    said = describe_changes(regions)
    if mm_per_px is None or not regions or list(reasons[:len(said)]) != said:
        return list(reasons)
    return describe_changes(regions, mm_per_px=mm_per_px) + list(reasons[len(said):])


def scale_from_length(polygon, length_mm):
    """A scale from a length measured on the body: the scar's length (mm) over its outline's longest extent.

    Parameters
    ----------
    polygon : array_like, shape (K, 2)
        The scar's outline, (x, y) pixels of the photo it was drawn on (K >= 2).
    length_mm : float
        The scar's length measured in clinic, mm (> 0).

    Returns
    -------
    mm_per_px : float or None
        None when the outline has no extent.
    """
    points = np.asarray(polygon, float).reshape(-1, 2)
    if not length_mm or length_mm <= 0:
        raise ValueError("length_mm must be a positive length in mm; measure the scar end to end.")
    if len(points) < 2:
        return None
    extent = float(np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)).max())
    return float(length_mm) / extent if extent >= 1.0 else None


def carry_scale(reference_mm_per_px, homography, reference_point):
    """A reference photo's scale at a point, in the moving photo's pixels there.

    Parameters
    ----------
    reference_mm_per_px : float
    homography : array_like, shape (3, 3)
        Moving pixel (x, y, 1) -> reference pixel, as :func:`registration.analyze_pair` gives it.
    reference_point : array_like, shape (2,)
        (x, y) in the reference photo.

    Returns
    -------
    mm_per_px : float
        Millimetres per moving pixel at the point.
    """
    H = np.asarray(homography, float)
    p = np.linalg.inv(H) @ np.array([reference_point[0], reference_point[1], 1.0])
    x, y = p[0] / p[2], p[1] / p[2]
    v = H @ np.array([x, y, 1.0])
    jac = np.array([[H[0, 0] * v[2] - v[0] * H[2, 0], H[0, 1] * v[2] - v[0] * H[2, 1]],
                    [H[1, 0] * v[2] - v[1] * H[2, 0], H[1, 1] * v[2] - v[1] * H[2, 1]]]) / v[2] ** 2
    return float(reference_mm_per_px) * float(np.sqrt(abs(np.linalg.det(jac))))
