"""Clinicians' outcomes on resolved alerts, exported for a later training run of the recurrence model.

Writes the ``--feedback`` format of ``python -m recurrence.train`` (see recurrence/MODEL_CARD.md): one line per
changed region of each resolved alert, with the aligned follow-up and the baseline as image files beside it.
"""
from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from followup import audit
from followup.db import db
from followup.models import Alert, Analysis, Photo, Site
from followup.models.alerts import AlertStatus
from followup.storage import storage


def export_outcomes(out_dir: Path, *, clinic_id: int | None = None) -> dict:
    """Write ``outcomes.jsonl`` and ``images/`` under ``out_dir``; returns counts. Audited as an export."""
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    query = select(Alert).where(Alert.status == AlertStatus.RESOLVED, Alert.photo_id.is_not(None)).order_by(Alert.id)
    if clinic_id is not None:
        query = query.where(Alert.clinic_id == clinic_id)
    alerts = regions = 0
    patients: set[int] = set()  # whose photos left the system: the export is in each one's audit trail
    with open(out_dir / "outcomes.jsonl", "w") as out:
        for alert in db.session.execute(query).scalars():
            analysis = db.session.execute(
                select(Analysis).where(Analysis.photo_id == alert.photo_id, Analysis.comparison == "baseline")
                .order_by(Analysis.id.desc()).limit(1)).scalar_one_or_none()
            if analysis is None or not analysis.regions or not {"aligned", "baseline"} <= set(analysis.overlays):
                continue
            site = db.session.get(Site, alert.site_id)
            photo = db.session.get(Photo, alert.photo_id)
            files = {}
            for name in ("aligned", "baseline"):
                key = analysis.overlays[name]
                (images / key).write_bytes(storage().get(key))
                files[name] = f"images/{key}"
            years = site.years_since_surgery(photo.received_at.date())
            for region in analysis.regions:
                out.write(json.dumps({
                    "alert_id": alert.id, "followup_image": files["aligned"], "baseline_image": files["baseline"],
                    "region": {k: region.get(k) for k in ("bbox", "area_px", "growth_pct", "delta_e",
                                                           "distance_to_lesion_px", "kind", "score")},
                    "diagnosis": site.diagnosis, "years_since_surgery": round(years, 3), "answers": photo.answers(),
                    "outcome": alert.outcome, "histology": None,
                }) + "\n")
                regions += 1
            alerts += 1
            patients.add(site.patient_id)
    audit.record("export_outcomes", "alert", None, actor="cli", alerts=alerts, regions=regions, path=str(out_dir),
                 patients=patients)
    return {"alerts": alerts, "regions": regions, "out": str(out_dir / "outcomes.jsonl")}
