"""Scar Watch image analysis: quality, alignment, normalisation, change detection.

Pure functions on RGB uint8 arrays; no web framework, no database.
"""

from .alignment import Alignment, align
from .change import ChangeResult, detect_change
from .lesion import segment_lesion
from .normalisation import normalise_colour
from .overlays import render_overlays
from .pipeline import FLAG_THRESHOLD, PairAnalysis, analyze_pair
from .quality import Quality, assess_quality
from .synth import make_pair

__all__ = [
    "Alignment",
    "ChangeResult",
    "FLAG_THRESHOLD",
    "PairAnalysis",
    "Quality",
    "align",
    "analyze_pair",
    "assess_quality",
    "detect_change",
    "make_pair",
    "normalise_colour",
    "render_overlays",
    "segment_lesion",
]
