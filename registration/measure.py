"""Changed regions in millimetres: a pair's scale (:func:`registration.sticker_detect.pair_scale`, or one
a clinic measured) turns the pipeline's pixel figures and sentences into sizes a clinician reads.

Pure: regions are the dicts :func:`registration.analyze_pair` returns (reference pixels).
"""

import math

__all__ = ["region_mm", "reasons_in_mm"]


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


_OUTSIDE = " (outside the watched site)"


def _where_px(distance_px):
    """How :func:`registration.analyze_pair` says where a kind of change is (its ``{where}``)."""
    if distance_px == 0:
        return "at the edge of the lesion or scar"
    if math.isfinite(distance_px):
        return f"about {distance_px:.0f} px from the lesion or scar"
    return None


def _where_mm(region, distance_px, mm_per_px):
    across = f"{region_mm(region, mm_per_px)['diameter_mm']:.1f} mm across"
    if distance_px == 0:
        return f"{across}, at the edge of the lesion or scar"
    if math.isfinite(distance_px):
        return f"{across}, {distance_px * mm_per_px:.0f} mm from the scar"
    return across


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
        In each sentence about a kind of change, where it is ("about 40 px from the lesion or scar") is said in mm
        with its size ("3.2 mm across, 6 mm from the scar"); the size is that of the largest region of that kind
        (sentences of kinds at the same distance take the largest of them). The other sentences are unchanged.
    """
    if mm_per_px is None or not regions:
        return list(reasons)
    groups = {}  # (where in px, in the watched site) -> (largest region, its kind's distance)
    for kind, in_site in dict.fromkeys((r["kind"], r["in_site"]) for r in regions):
        group = [r for r in regions if r["kind"] == kind and r["in_site"] == in_site]
        d = min(float(r["distance_to_lesion_px"]) for r in group)
        where = _where_px(d)
        largest = max(group, key=lambda r: r["area_px"])
        known = groups.get((where, in_site))
        if where is not None and (known is None or largest["area_px"] > known[0]["area_px"]):
            groups[(where, in_site)] = (largest, d)
    out = []
    for reason in reasons:
        in_site = not reason.endswith(_OUTSIDE)
        for (where, site), (region, d) in groups.items():
            if site == in_site and where in reason:
                reason = reason.replace(where, _where_mm(region, d, mm_per_px), 1)
                break
        out.append(reason)
    return out
