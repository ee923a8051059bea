"""Scar Watch image analysis: quality, alignment, normalisation, change detection, the reference sticker.

Pure functions on RGB uint8 arrays; no web framework, no database.
"""

from .alignment import Alignment, align
from .change import ChangeResult, detect_change
from .lesion import segment_clinical_lesion, segment_lesion
from .measure import carry_scale, reasons_in_mm, region_mm, scale_from_length
from .modality import CLINICAL, DERMOSCOPY, MODALITIES, detect_modality
from .normalisation import normalise_colour
from .overlays import render_overlays
from .pipeline import FLAG_THRESHOLD, PairAnalysis, analyze_pair
from .quality import Quality, assess_quality
from .site import mask_to_polygon, outline_from_point, pixels_per_mm, polygon_to_mask, propose_site, site_region
from .skin import segment_skin
from .sticker_detect import (
                   ColourCorrection,
                   StickerDetection,
                   apply_colour_correction,
                   colour_correction,
                   detect_sticker,
                   sticker_mask,
)
from .synth import make_pair

__all__ = [
    "CLINICAL",
    "DERMOSCOPY",
    "MODALITIES",
    "Alignment",
    "ChangeResult",
    "ColourCorrection",
    "FLAG_THRESHOLD",
    "PairAnalysis",
    "Quality",
    "StickerDetection",
    "align",
    "analyze_pair",
    "apply_colour_correction",
    "assess_quality",
    "carry_scale",
    "colour_correction",
    "detect_change",
    "detect_modality",
    "detect_sticker",
    "make_pair",
    "mask_to_polygon",
    "normalise_colour",
    "outline_from_point",
    "pixels_per_mm",
    "polygon_to_mask",
    "propose_site",
    "reasons_in_mm",
    "region_mm",
    "scale_from_length",
    "render_overlays",
    "segment_clinical_lesion",
    "segment_lesion",
    "segment_skin",
    "site_region",
    "sticker_mask",
]
