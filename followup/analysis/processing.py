"""What a photo job does: a stored photo becomes analyses, and maybe an alert or a retake request.

- A baseline photo is checked for quality: accepted (done) or rejected with reasons a patient can act on.
  An accepted baseline gets the site's outline proposed on it (followup.intake.outlines).
- A follow-up is compared with the site's baseline and with the previous accepted follow-up (slow growth
  shows against the baseline, sudden change against the last photo); both analyses are kept and the alert
  uses the worse. Both are made with the site's outline and its watched margin: a change located only
  outside the watched site is reported but never makes a priority-1 alert.
- Sizes in mm (issue 15): the reference sticker in both photos gives the pair's scale
  (registration.sticker_detect.pair_scale), else the scar length the clinic measured (on the outlined
  baseline), else a previous follow-up's own; each analysis keeps it with its source and reasons, and its regions
  and reasons in mm. Two usable stickers put both photos in true colour before the comparison; a sticker over
  the scar is a retake; a missing one (the baseline had one) is a suggestion.
- A photo the pipeline cannot read is never "no change": it is rejected with reasons (the patient is asked
  to retake), and after repeated failures it goes to a human.
"""
from __future__ import annotations

import io
import logging
from typing import Optional

import cv2
import numpy as np
from PIL import Image
from sqlalchemy import select

from followup.analysis import jobs
from followup.analysis.analyser import Recurrence, get_analyser
from followup.db import db, utcnow
from followup.intake import outlines
from followup.intake.photos import baseline_of, load_image, previous_followup_of
from followup.models import Analysis, Clinic, Photo, Site, UploadLink
from followup.models.alerts import AlertKind, AlertPriority
from followup.models.photos import PhotoKind, PhotoStatus
from followup.outreach import reminders
from followup.outreach.texts import request_retake
from followup.storage import storage
from followup.triage import alerts
from registration import (
    PairAnalysis,
    StickerDetection,
    assess_quality,
    detect_modality,
    detect_sticker,
    render_overlays,
)
from registration.measure import carry_scale, reasons_in_mm, region_mm
from registration.sticker_detect import apply_colour_correction, colour_correction, pair_scale, sticker_covers

log = logging.getLogger(__name__)

HIGH_PRIORITY_SCORE = 0.8
# The most urgent priority a change gets when every region it located is outside the watched site.
OUTSIDE_SITE_PRIORITY = AlertPriority.HIGH
UNREADABLE_IN_A_ROW_FOR_HUMAN = 2
WORRYING_ANSWERS = {"bleed": "bleeding", "grew": "growth"}


def process_photo(photo: Photo) -> None:
    image = load_image(photo.storage_key)
    if photo.kind == PhotoKind.BASELINE:
        _check_baseline(photo, image)
        return
    site = db.session.get(Site, photo.site_id)
    baseline = baseline_of(photo.site_id)
    if baseline is None:
        _finish(photo, PhotoStatus.FAILED, "No accepted baseline photo for this site, so nothing to compare with.")
        _raise(site, photo, kind=AlertKind.NEEDS_REVIEW, priority=AlertPriority.HIGH, score=1.0,
               reasons=["No baseline photo for this site: review the follow-up by eye and add a baseline."])
        db.session.commit()
        return

    sticker = _detect_sticker(image, photo)
    analyses = [_compare(photo, image, site, "baseline", baseline, baseline, sticker)]
    previous = previous_followup_of(photo)
    if previous is not None and analyses[0].registered:
        analyses.append(_compare(photo, image, site, "previous", previous, baseline, sticker))
    main = analyses[0]
    if not main.quality.get("usable", False) or not main.registered:
        _reject(photo, site, main)
        if main.registered and main.flag:  # a change seen even in a poor photo goes to a person now
            _alert_if_needed(photo, site, [main])
    else:
        _finish(photo, PhotoStatus.DONE, None)
        _use_up_link(photo)
        _alert_if_needed(photo, site, analyses)
    db.session.commit()


def _check_baseline(photo: Photo, image: np.ndarray) -> None:
    quality = assess_quality(image)
    modality = photo.modality or detect_modality(image)
    if quality.usable:
        _finish(photo, PhotoStatus.DONE, None)
    else:
        _finish(photo, PhotoStatus.REJECTED, "; ".join(quality.reasons))
    sticker = _detect_sticker(image, photo)
    own_mm = sticker.scale_mm_per_px if sticker.usable else None
    db.session.add(Analysis(photo_id=photo.id, comparison="quality", quality=_quality_dict(quality), flag=False,
                            reasons=list(quality.reasons), modality=modality, scale_mm_per_px=_rounded(own_mm),
                            reference_mm_per_px=_rounded(own_mm), scale_source="marker" if own_mm else None,
                            scale_reasons=list(sticker.reasons) + ([] if own_mm else [NO_SCALE])))
    if quality.usable:
        try:
            outlines.propose_for_baseline(db.session.get(Site, photo.site_id), photo, image, modality=modality)
        except Exception:  # noqa: BLE001 - the outline is an aid: without one, staff are asked to draw it
            log.exception("photo %s: the site outline could not be proposed", photo.id)
    db.session.commit()


def _detect_sticker(image: np.ndarray, photo: Photo) -> StickerDetection:
    """The reference sticker in a photo; a photo whose sticker cannot be read is measured without one."""
    try:
        return detect_sticker(image)
    except Exception:  # noqa: BLE001 - the scale is an aid: without it, sizes stay in pixels
        log.exception("photo %s: the reference sticker could not be read", photo.id)
        return StickerDetection(found=False)


def _compare(photo: Photo, image: np.ndarray, site: Site, comparison: str, reference: Photo,
             baseline: Photo, sticker: StickerDetection) -> Analysis:
    reference_image = load_image(reference.storage_key)
    reference_sticker = _detect_sticker(reference_image, reference)
    scales = {}

    def scale(result: PairAnalysis) -> Optional[float]:
        scales["pair"] = _pair_scale(site, reference, reference_sticker, sticker, result.homography)
        return scales["pair"]["reference_mm_per_px"]

    clinic = db.session.get(Clinic, site.patient.clinic_id)
    declared = photo.modality or baseline.modality  # None: the pipeline tells from the pixels
    # The watched margin in true mm where the reference photo has its own scale (its sticker, or the clinic's).
    known_mm = (reference_sticker.scale_mm_per_px if reference_sticker.usable
                else outlines.clinic_mm_per_px(site, reference))
    margin = outlines.margin_px(reference_image.shape, margin_mm=outlines.site_margin_mm(site),
                                modality=declared or detect_modality(reference_image), mm_per_px=known_mm)
    outline = outlines.reference_mask(site, baseline, reference, reference_image.shape)
    reference_compared, compared, corrected = _true_colour(reference_image, reference_sticker, image, sticker)
    result, recurrence = get_analyser().analyse(
        reference_compared, compared, reference_mask=outline, modality=declared, site_margin_px=margin,
        diagnosis=site.diagnosis, years_since_surgery=max(site.years_since_surgery(photo.received_at.date()), 0.0),
        answers=photo.answers(), operating_point=clinic.operating_point, scale=scale)
    if "pair" not in scales:  # an analyser that did not ask (it measures nothing in mm)
        scale(result)
    measured = scales["pair"]
    mm_per_px = measured["reference_mm_per_px"]
    quality = _quality_dict(result.quality)
    if corrected is not None:
        quality["colour_corrected"], quality["colour_delta_e"] = True, corrected
    covered = (sticker_covers(result.outline, sticker, result.homography)
               if result.registered and result.outline is not None else 0.0)
    if covered >= STICKER_ON_SCAR_SHARE:
        quality["usable"] = False
        quality["reasons"].append(STICKER_ON_SCAR)
    reasons = _reasons(result, recurrence, mm_per_px)
    if comparison == "baseline" and reference_sticker.usable and not sticker.found:
        reasons.append(STICKER_MISSING)
    row = Analysis(
        photo_id=photo.id, reference_photo_id=reference.id, comparison=comparison,
        registered=bool(result.registered),
        homography=None if result.homography is None else result.homography.tolist(),
        alignment_confidence=float(result.alignment_confidence), quality=quality,
        regions=_regions(result, recurrence, mm_per_px), change_score=float(result.change_score),
        recurrence_score=recurrence.score, flag=bool(result.flag), site_flag=bool(result.site_flag),
        modality=result.modality, reasons=reasons,
        scale_mm_per_px=_rounded(measured["moving_mm_per_px"]), reference_mm_per_px=_rounded(mm_per_px),
        scale_source=measured["source"], scale_reasons=list(measured["reasons"]),
        model_version=recurrence.model_version, timings={k: round(float(v), 4) for k, v in result.timings.items()},
        overlays=_store_overlays(reference_compared, result, recurrence),
    )
    db.session.add(row)
    db.session.flush()
    return row


NO_SCALE = "no scale in this photo"
#: The share of the scar's outline a sticker may hide before the photo is retaken.
STICKER_ON_SCAR_SHARE = 0.2
STICKER_ON_SCAR = ("the reference sticker covers the scar — place it beside the scar (about a finger's width "
                   "away), not on it, and take the photo again")
STICKER_MISSING = ("no reference sticker in this photo, though the first photo had one: sizes are measured from "
                   "the first photo — next time, please put the sticker beside the scar")


def _true_colour(reference_image: np.ndarray, reference_sticker: StickerDetection, image: np.ndarray,
                 sticker: StickerDetection) -> tuple[np.ndarray, np.ndarray, Optional[float]]:
    """Both photos in true colour from their stickers' patches when both stickers are usable (else as they are);
    and the worse median CIEDE2000 left on the patches, None when not corrected."""
    if not (reference_sticker.usable and sticker.usable):
        return reference_image, image, None
    try:
        corrections = [colour_correction(reference_sticker), colour_correction(sticker)]
    except ValueError:
        return reference_image, image, None
    if not all(c.usable for c in corrections):
        return reference_image, image, None
    return (apply_colour_correction(reference_image, corrections[0]), apply_colour_correction(image, corrections[1]),
            round(max(c.median_delta_e for c in corrections), 2))



def _pair_scale(site: Site, reference: Photo, reference_sticker: StickerDetection, sticker: StickerDetection,
                homography) -> dict:
    """The pair's scale (``registration.sticker_detect.pair_scale``): the stickers' first; without one, the scar
    length the clinic measured, on the photo the scar was outlined on (scale_source "clinic"); for a previous
    follow-up as the reference, the scale its own comparison with the baseline gave it."""
    scale = pair_scale(reference_sticker, sticker, homography)
    if scale["source"] is not None:
        return scale
    clinic_mm = outlines.clinic_mm_per_px(site, reference)
    if clinic_mm is not None:
        centre = np.asarray(site.outline_polygon, float).mean(axis=0)
        source, reference_mm, note = "clinic", clinic_mm, (f"scale from the scar's length measured in clinic "
                                                             f"({site.scar_length_mm:g} mm)")
    else:
        # A previous follow-up as the reference: the scale it was given against the baseline, in its own pixels.
        earlier = db.session.execute(
            select(Analysis).where(Analysis.photo_id == reference.id, Analysis.comparison == "baseline",
                                   Analysis.scale_mm_per_px.is_not(None)).order_by(Analysis.id.desc()).limit(1)
        ).scalar_one_or_none()
        if earlier is None:
            return scale
        centre = np.array([reference.width / 2, reference.height / 2])
        source, reference_mm = earlier.scale_source, earlier.scale_mm_per_px
        note = "scale from the previous photo's, as measured against the first photo"
    scale.update(source=source, reference_mm_per_px=reference_mm,
                 moving_mm_per_px=None if homography is None else carry_scale(reference_mm, homography, centre),
                 reasons=[r for r in scale["reasons"] if r != NO_SCALE] + [note])
    return scale


def _quality_dict(quality) -> dict:
    return {"usable": bool(quality.usable), "reasons": list(quality.reasons),
            "metrics": {k: float(v) for k, v in quality.metrics.items() if isinstance(v, (int, float, np.floating))}}


def _rounded(mm_per_px: Optional[float]) -> Optional[float]:
    return None if mm_per_px is None else round(float(mm_per_px), 6)


def _regions(result: PairAnalysis, recurrence: Recurrence, mm_per_px: Optional[float]) -> list[dict]:
    """The pipeline's regions (reference pixels) with their figures in mm (None without a scale)."""
    regions = []
    for i, region in enumerate(result.regions):
        entry = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in region.items()}
        entry.update(region_mm(region, mm_per_px))
        if i < len(recurrence.regions):
            entry["recurrence_score"] = float(recurrence.regions[i]["score"])
            entry["model_reasons"] = list(recurrence.regions[i]["reasons"])
        regions.append(entry)
    return regions


def _reasons(result: PairAnalysis, recurrence: Recurrence, mm_per_px: Optional[float]) -> list[str]:
    reasons = reasons_in_mm(result.reasons, result.regions, mm_per_px)
    return reasons + [r for r in recurrence.reasons if r not in reasons]


def _jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _store_overlays(reference_image: np.ndarray, result: PairAnalysis, recurrence: Recurrence) -> dict[str, str]:
    images = render_overlays(reference_image, result)
    saliency = _saliency_overlay(images["aligned"], recurrence)
    if saliency is not None:
        images["saliency"] = saliency
    images["baseline"] = reference_image
    return {name: storage().put(_jpeg(pixels), ext="jpg") for name, pixels in images.items()}


def _saliency_overlay(aligned: np.ndarray, recurrence: Recurrence) -> Optional[np.ndarray]:
    """The model's saliency crops pasted back where they came from, in red over the aligned follow-up."""
    heat = np.zeros(aligned.shape[:2], np.float32)
    for region in recurrence.regions:
        sal, box = region.get("saliency"), region.get("crop_box")
        if sal is None or box is None:
            continue
        x0, y0, x1, y1 = (int(v) for v in box)
        patch = cv2.resize(np.asarray(sal, np.float32), (x1 - x0, y1 - y0))
        tx0, ty0 = max(x0, 0), max(y0, 0)
        tx1, ty1 = min(x1, heat.shape[1]), min(y1, heat.shape[0])
        if tx1 > tx0 and ty1 > ty0:
            heat[ty0:ty1, tx0:tx1] = np.maximum(heat[ty0:ty1, tx0:tx1],
                                                patch[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0])
    if not heat.any():
        return None
    heat = heat / max(float(heat.max()), 1e-6)
    out = aligned.astype(np.float32)
    out[..., 0] = out[..., 0] * (1 - 0.6 * heat) + 255 * 0.6 * heat
    out[..., 1:] *= (1 - 0.4 * heat)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _finish(photo: Photo, status: PhotoStatus, detail: Optional[str]) -> None:
    jobs.check_claim(photo)  # a worker given up for dead must not write a second outcome
    photo.status, photo.status_detail, photo.status_changed_at = status, detail, utcnow()


def _use_up_link(photo: Photo) -> None:
    """A patient link is one-time: once a photo sent through it is accepted, it opens nothing more."""
    if photo.upload_link_id is not None:
        link = db.session.get(UploadLink, photo.upload_link_id)
        link.used_at = link.used_at or utcnow()


def _reject(photo: Photo, site: Site, analysis: Analysis) -> None:
    reasons = list(analysis.quality.get("reasons") or [])
    if not analysis.registered:
        reasons.append("we could not match this photo to your first photo — photograph the same spot, "
                       "from the same distance, with the whole scar in view")
    _finish(photo, PhotoStatus.REJECTED, "; ".join(reasons))
    recent = list(db.session.execute(
        select(Photo.status).where(Photo.site_id == site.id, Photo.kind == PhotoKind.FOLLOWUP)
        .order_by(Photo.received_at.desc(), Photo.id.desc()).limit(UNREADABLE_IN_A_ROW_FOR_HUMAN)
    ).scalars())
    if len(recent) >= UNREADABLE_IN_A_ROW_FOR_HUMAN and all(s == PhotoStatus.REJECTED for s in recent):
        _raise(site, photo, kind=AlertKind.UNREADABLE, priority=AlertPriority.HIGH,
               score=float(analysis.change_score or 0.0),
               reasons=[f"{UNREADABLE_IN_A_ROW_FOR_HUMAN} photos in a row could not be read: " + "; ".join(reasons)])
    reminders.on_photo_rejected(photo)
    if photo.uploaded_by_id is None:
        # The patient sent it: they are asked again, with the reasons. A photo staff uploaded is their retake to
        # make (the page shows why it was rejected): the patient is not texted about a photo they never sent.
        request_retake(site, reasons, key=f"retake:photo:{photo.id}")


def _alert_if_needed(photo: Photo, site: Site, analyses: list[Analysis]) -> None:
    baseline = analyses[0]
    # A previous follow-up is a noisier reference than the baseline (its own capture changes add to ours):
    # on synthetic unchanged re-captures, follow-up-to-follow-up comparisons flagged about half the time.
    # So that comparison raises an alert only when the baseline comparison also located a changed region.
    usable = [a for a in analyses if a.comparison == "baseline" or baseline.regions]
    # A change in the watched site first (site_flag None: a row from before sites had outlines).
    worst = max(usable, key=lambda a: (a.flag, a.site_flag is not False, a.recurrence_score or 0.0))
    answers = photo.answers()
    worrying = [word for field, word in WORRYING_ANSWERS.items() if answers.get(field)]
    if worst.flag:
        score = float(worst.recurrence_score or worst.change_score or 0.0)
        priority = (AlertPriority.URGENT if score >= HIGH_PRIORITY_SCORE or len(worrying) == len(WORRYING_ANSWERS)
                    else AlertPriority.HIGH)
        label = "against the baseline" if worst.comparison == "baseline" else "since the last photo"
        reasons = [f"change {label}"]
        if worst.site_flag is False:
            priority = max(priority, OUTSIDE_SITE_PRIORITY)
            reasons.append(f"the change is outside the watched site ({outlines.site_margin_mm(site):g} mm around "
                           "the scar)")
        _raise(site, photo, kind=AlertKind.CHANGE, priority=priority, score=score,
               reasons=reasons + list(worst.reasons))
    elif worrying:
        # The image shows nothing, but the patient does: a person should look (the patient knows things we don't).
        _raise(site, photo, kind=AlertKind.PATIENT_REPORT, priority=AlertPriority.ROUTINE,
               score=float(worst.recurrence_score or 0.0),
               reasons=[f"patient reports {' and '.join(worrying)}; no visible change was detected"])


def _raise(site: Site, photo: Photo, *, kind: AlertKind, priority: AlertPriority, score: float,
           reasons: list[str]) -> None:
    alerts.raise_alert(clinic_id=site.patient.clinic_id, site_id=site.id, photo_id=photo.id, kind=kind,
                       priority=priority, score=score, reasons=reasons)
