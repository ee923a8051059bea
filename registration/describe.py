"""The words for changed regions: one sentence per kind of change, in pixels or, with a scale, in mm.

Pure: regions are the dicts :func:`registration.analyze_pair` returns (reference pixels).
"""

import math

__all__ = ["describe_changes"]

_KIND_WORDS = {
    "new_lesion": "a new dark spot {where}",
    "growth": "the lesion or scar area grew by about {growth}",
    "darkening": "a new darker or blue-grey area inside the lesion or scar",
    "redness": "a new red area {where}",
    "other": "a colour change {where}",
}
_EDGE = "at the edge of the lesion or scar"
_OUTSIDE = " (outside the watched site)"


def _where(group, mm_per_px):
    d = min(float(r["distance_to_lesion_px"]) for r in group)
    if not math.isfinite(d):
        return "in the photo"
    if mm_per_px is None:
        return _EDGE if d == 0 else f"about {d:.0f} px from the lesion or scar"
    area_mm2 = max(float(r["area_px"]) for r in group) * mm_per_px**2
    across = f"{2 * math.sqrt(area_mm2 / math.pi):.1f} mm across"  # the largest region's, as a disc
    return f"{across}, {_EDGE}" if d == 0 else f"{across}, {d * mm_per_px:.0f} mm from the scar"


def describe_changes(regions, *, mm_per_px=None):
    """One short sentence per kind of change (and watched site or not), in the regions' order.

    Parameters
    ----------
    regions : list of dict
        Regions of :func:`registration.analyze_pair` (``kind``, ``in_site``, ``area_px``,
        ``distance_to_lesion_px``, ``growth_pct``; reference pixels), strongest first.
    mm_per_px : float, optional
        Millimetres per reference pixel: where a change is is then said with its size ("3.2 mm across, 6 mm
        from the scar"; the largest region of that kind); None: in pixels ("about 40 px from the lesion or
        scar").

    Returns
    -------
    sentences : list of str
    """
    sentences = []
    for kind, in_site in dict.fromkeys((r["kind"], r["in_site"]) for r in regions):
        group = [r for r in regions if r["kind"] == kind and r["in_site"] == in_site]
        growth = sum(r["growth_pct"] or 0.0 for r in group)
        growth = f"{growth:.0f} %" if growth >= 1 else "less than 1 %"
        sentence = _KIND_WORDS[kind].format(where=_where(group, mm_per_px), growth=growth)
        sentences.append(sentence if in_site else sentence + _OUTSIDE)
    return sentences
