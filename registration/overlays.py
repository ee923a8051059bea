"""Pictures of an analysis for the web pages."""

import cv2
import numpy as np

from ._imageutil import _check_rgb

_OUTLINE_COLOUR = (255, 230, 0)
#: The watched site region (the scar and its margin) and the scar itself.
_SITE_COLOUR = (0, 200, 255)
_SCAR_COLOUR = (255, 255, 255)


def render_overlays(reference_image, analysis):
    """Render the aligned follow-up, the change outline and the heatmap.

    Parameters
    ----------
    reference_image : ndarray, shape (M, N, 3), uint8
        Baseline RGB photo the analysis was made against.
    analysis : registration.pipeline.PairAnalysis
        Result of :func:`registration.analyze_pair` for this baseline.

    Returns
    -------
    overlays : dict of str to ndarray, shape (M, N, 3), uint8
        ``"aligned"``: the follow-up in the baseline frame (the baseline, greyed,
        when it could not be aligned); ``"outline"``: the aligned follow-up with
        changed areas outlined in yellow, the scar in white and the watched site
        region in blue; ``"heatmap"``: the change heatmap blended over the aligned
        follow-up.
    """
    reference_image = _check_rgb(reference_image, "reference_image")
    if analysis.change_mask.shape != reference_image.shape[:2]:
        raise ValueError("analysis was made against a baseline of another size; "
                         "pass the same reference_image.")
    if analysis.aligned_image is None:
        grey = cv2.cvtColor(reference_image, cv2.COLOR_RGB2GRAY)
        aligned = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    else:
        aligned = analysis.aligned_image.copy()
    outline = aligned.copy()
    thickness = max(2, round(max(outline.shape[:2]) / 300))
    for mask, colour, width in ((analysis.site_mask, _SITE_COLOUR, max(1, thickness // 2)),
                                (analysis.outline, _SCAR_COLOUR, max(1, thickness // 2)),
                                (analysis.change_mask, _OUTLINE_COLOUR, thickness)):
        if mask is None or mask.all():
            continue
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(outline, contours, -1, colour, width)
    heat = (np.clip(analysis.heatmap, 0, 1) * 255).astype(np.uint8)
    coloured = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    alpha = (0.6 * np.clip(analysis.heatmap * 2, 0, 1))[..., None]
    heatmap = (aligned * (1 - alpha) + coloured * alpha).astype(np.uint8)
    return {"aligned": aligned, "outline": outline, "heatmap": heatmap}
