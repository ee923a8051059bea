"""Pure encoders shared by training and inference: patient answers, patient facts, region measurements.

Answers (``grew, itch, bleed, hurt, changed, elevation``) are each encoded as two values
``(yes, no)``: yes -> (1, 0), no -> (0, 1), missing/unknown -> (0, 0). Patient facts (``age, sex,
region``, the body site) follow the same rule: unknown is all zeros.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

ANSWER_KEYS = ("grew", "itch", "bleed", "hurt", "changed", "elevation")
DIAGNOSES = ("melanoma", "bcc", "scc", "other")
KINDS = ("new_lesion", "growth", "darkening", "redness", "other")
PATIENT_KEYS = ("age", "sex", "region")
# body sites as the shared manifest names them, grouped as the skin-cancer literature reports risk
SITE_GROUPS = {
    "head_neck": ("face", "nose", "ear", "lip", "scalp", "neck", "head", "head/neck"),
    "trunk": ("back", "chest", "abdomen", "trunk", "anterior torso", "posterior torso", "lateral torso"),
    "upper_limb": ("upper extremity", "forearm", "arm", "hand", "palms/soles"),
    "lower_limb": ("lower extremity", "thigh", "foot", "leg"),
    "genital": ("genital", "oral/genital"),
}
PATIENT_FEATURES = (["age", "age_known", "sex_male", "sex_female"] + [f"site_{g}" for g in SITE_GROUPS])

# region vector layout (n_region = 29)
REGION_FEATURES = (
    ["log_area", "growth_pct", "growth_known", "delta_e", "log_distance"]
    + [f"kind_{k}" for k in KINDS]
    + ["pipeline_score"]
    + [f"dx_{d}" for d in DIAGNOSES]
    + ["years", "years_known"]
    + [f"{k}_{v}" for k in ANSWER_KEYS for v in ("yes", "no")]
)


def _answer_value(v):
    """Return True/False/None from bool, 0/1, '1'/'0', 'yes'/'no', '' or None."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float, np.integer, np.floating)):
        if isinstance(v, float) and math.isnan(v):
            return None
        return bool(v)
    s = str(v).strip().lower()
    if s in ("1", "1.0", "true", "yes", "y"):
        return True
    if s in ("0", "0.0", "false", "no", "n"):
        return False
    return None


def encode_answers(answers: Mapping | None) -> np.ndarray:
    """answers dict (any subset of ANSWER_KEYS) -> float32 (12,)"""
    out = np.zeros(2 * len(ANSWER_KEYS), np.float32)
    if not answers:
        return out
    for i, k in enumerate(ANSWER_KEYS):
        v = _answer_value(answers.get(k))
        if v is True:
            out[2 * i] = 1.0
        elif v is False:
            out[2 * i + 1] = 1.0
    return out


def encode_patient(facts: Mapping | None) -> np.ndarray:
    """{"age": years, "sex": "male"/"female", "region": body site} (any subset) -> float32 (9,)"""
    out = np.zeros(len(PATIENT_FEATURES), np.float32)
    if not facts:
        return out
    try:
        age = float(facts.get("age"))
    except (TypeError, ValueError):
        age = math.nan
    if math.isfinite(age) and 0 <= age <= 120:
        out[0], out[1] = age / 80.0, 1.0
    sex = str(facts.get("sex") or "").strip().lower()
    out[2], out[3] = float(sex in ("male", "m")), float(sex in ("female", "f"))
    site = str(facts.get("region") or "").strip().lower()
    for i, names in enumerate(SITE_GROUPS.values()):
        out[4 + i] = float(site in names)
    return out


def decode_answers(answers: Mapping | None) -> dict:
    """answers dict -> {key: True/False} for known answers only."""
    if not answers:
        return {}
    out = {}
    for k in ANSWER_KEYS:
        v = _answer_value(answers.get(k))
        if v is not None:
            out[k] = v
    return out


def encode_region(region: Mapping, *, diagnosis=None, years_since_surgery=None, answers=None) -> np.ndarray:
    """Region measurement dict (pipeline format) + context -> float32 (29,)"""
    v = []
    area = float(region.get("area_px") or 0)
    v.append(math.log1p(max(area, 0.0)) / 10.0)
    g = region.get("growth_pct")
    if g is None or (isinstance(g, float) and math.isnan(g)):
        v += [0.0, 0.0]
    else:
        v += [float(np.clip(float(g) / 100.0, -1.0, 3.0)), 1.0]
    v.append(float(np.clip(float(region.get("delta_e") or 0.0) / 20.0, 0.0, 5.0)))
    d = float(region.get("distance_to_lesion_px") or 0.0)
    v.append(math.log1p(max(d, 0.0)) / 6.0)
    kind = region.get("kind", "other")
    v += [1.0 if kind == k else 0.0 for k in KINDS]
    v.append(float(np.clip(float(region.get("score") or 0.0), 0.0, 1.0)))
    dx = (diagnosis or "").lower()
    v += [1.0 if dx == k else 0.0 for k in DIAGNOSES]
    if years_since_surgery is None:
        v += [0.0, 0.0]
    else:
        v += [float(np.clip(float(years_since_surgery) / 5.0, 0.0, 4.0)), 1.0]
    out = np.concatenate([np.asarray(v, np.float32), encode_answers(answers)])
    assert out.shape == (len(REGION_FEATURES),)
    return out
