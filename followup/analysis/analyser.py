"""The analysis engine a process loads once: the pure pipeline plus the recurrence model.

Used by photo jobs and by ``analyze-batch``; the model checkpoint is read once per process
(``RECURRENCE_CHECKPOINT``, else the newest committed one), so a new checkpoint is picked up on restart
without code changes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import numpy as np
from flask import current_app

from registration import PairAnalysis, analyze_pair

log = logging.getLogger(__name__)


@dataclass
class Recurrence:
    score: float
    reasons: list[str]
    regions: list[dict[str, Any]]  # per region: score, reasons, saliency (float32 crop), crop_box
    model_version: Optional[str]


class Analyser:
    """``analyse(reference, moving, …)`` → the pipeline's result and the model's reading of it."""

    def __init__(self, scorer=None, *, operating_point: str = "sensitivity_first"):
        self.scorer = scorer
        self.operating_point = operating_point

    @property
    def model_version(self) -> Optional[str]:
        return getattr(self.scorer, "version", None)

    def analyse(self, reference_image: np.ndarray, moving_image: np.ndarray, *, reference_mask=None,
                modality: Optional[str] = None, site_margin_px: Optional[float] = None,
                diagnosis: Optional[str] = None, years_since_surgery: Optional[float] = None,
                answers: Optional[Mapping[str, Optional[bool]]] = None,
                operating_point: Optional[str] = None,
                scale: Optional[Callable[[PairAnalysis], Optional[float]]] = None) -> tuple[PairAnalysis, Recurrence]:
        """``reference_mask`` (the scar on the reference, bool, its size), ``modality`` (None: detected) and
        ``site_margin_px`` (the watched margin) go to ``registration.analyze_pair``. ``scale`` (the pair's
        analysis → mm per reference pixel, or None) lets the model's reasons speak in mm."""
        analysis = analyze_pair(reference_image, moving_image, reference_mask=reference_mask, modality=modality,
                                site_margin_px=site_margin_px)
        return analysis, self.recurrence(analysis, diagnosis=diagnosis, years_since_surgery=years_since_surgery,
                                         answers=answers, reference_image=reference_image,
                                         operating_point=operating_point,
                                         mm_per_px=scale(analysis) if scale is not None else None)

    def recurrence(self, analysis: PairAnalysis, *, reference_image: np.ndarray, diagnosis=None,
                   years_since_surgery=None, answers=None, operating_point: Optional[str] = None,
                   mm_per_px: Optional[float] = None) -> Recurrence:
        """The model's recurrence probability for the photo; the change score stands in without a model
        or without an aligned image (and says so). ``operating_point`` is a clinic's choice
        (sensitivity_first, the default, or specificity_first)."""
        if self.scorer is None or analysis.aligned_image is None or not analysis.regions:
            note = [] if self.scorer is not None else ["recurrence score is the change score (no model loaded)"]
            return Recurrence(float(analysis.change_score), note, [], self.model_version)
        result = self.scorer.score_regions(
            analysis.aligned_image, reference_image, analysis.regions, diagnosis=diagnosis,
            years_since_surgery=years_since_surgery, answers=answers,
            operating_point=operating_point or self.operating_point, mm_per_px=mm_per_px)
        return Recurrence(float(result["photo_score"]), list(result["reasons"]), list(result["regions"]),
                          result.get("version", self.model_version))

    def batch_scorer(self):
        """The ``(analysis, reference_image, aligned_image) -> float`` callable ``registration.batch`` takes."""
        return lambda analysis, reference_image, aligned_image: self.recurrence(
            analysis, reference_image=reference_image).score


def load_analyser(checkpoint: Optional[str] = None, *, operating_point: str = "sensitivity_first") -> Analyser:
    from recurrence.predict import load_scorer

    try:
        scorer = load_scorer(checkpoint or None)
    except FileNotFoundError:
        log.warning("no recurrence checkpoint found: recurrence scores fall back to change scores")
        scorer = None
    return Analyser(scorer, operating_point=operating_point)


def get_analyser() -> Analyser:
    """This process's analyser, loaded on first use."""
    analyser = current_app.extensions.get("analyser")
    if analyser is None:
        analyser = load_analyser(current_app.config["RECURRENCE_CHECKPOINT"])
        current_app.extensions["analyser"] = analyser
    return analyser
