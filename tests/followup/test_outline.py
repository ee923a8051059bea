"""The site's outline: proposed on an accepted baseline, kept or replaced by later baselines, and carried into the
follow-up analysis with the protocol's margin; a change outside the watched site is never priority 1."""
from datetime import date, timedelta

import numpy as np
import pytest

from followup.analysis import processing
from followup.analysis.analyser import Recurrence
from followup.db import db
from followup.intake.photos import receive_photo
from followup.models import Alert, Analysis, Photo
from followup.records.patients import create_patient, create_site
from followup.records.plans import PROTOCOLS, resolve_protocol
from registration import PairAnalysis, Quality, pixels_per_mm, polygon_to_mask
from tests.followup.outline_cases import SHAPE, SQUARE, iou, jpeg, upload
from tests.helpers import skin_photo


def is_square(polygon) -> bool:
    return iou(polygon_to_mask(polygon, SHAPE), polygon_to_mask(SQUARE, SHAPE)) > 0.95


# --- proposal on an accepted baseline ---------------------------------------------------------------

def test_accepted_baseline_gets_the_lesion_proposed_as_its_outline(outline_site, lesion_scene):
    image, lesion = lesion_scene
    photo = upload(outline_site, image, modality="clinical")
    assert photo.status == "done"
    site = outline_site
    assert (site.outline_source, site.outline_photo_id, site.outline_note) == ("auto", photo.id, None)
    assert iou(polygon_to_mask(site.outline_polygon, image.shape), lesion) > 0.6
    quality = db.session.execute(db.select(Analysis).where(Analysis.photo_id == photo.id)).scalar_one()
    assert quality.comparison == "quality" and quality.modality == "clinical"


def test_empty_proposal_stores_nothing(outline_site, lesion_scene, no_proposal):
    photo = upload(outline_site, lesion_scene[0])
    assert photo.status == "done"
    assert (outline_site.outline_polygon, outline_site.outline_source) == (None, None)
    assert outline_site.outline_photo_id == photo.id  # proposed on it, nothing found


def test_rejected_baseline_proposes_nothing(outline_site, square_proposal):
    photo = upload(outline_site, (skin_photo(5)[0] * 0.05).astype(np.uint8))
    assert photo.status == "rejected" and outline_site.outline_polygon is None


def test_new_baseline_replaces_an_automatic_outline(outline_site, lesion_scene, monkeypatch):
    upload(outline_site, lesion_scene[0])
    assert outline_site.outline_source == "auto" and not is_square(outline_site.outline_polygon)
    monkeypatch.setattr("followup.intake.outlines.propose_site",
                        lambda image, modality=None: polygon_to_mask(SQUARE, image.shape))
    second = upload(outline_site, skin_photo(22)[0])
    assert (outline_site.outline_photo_id, outline_site.outline_source) == (second.id, "auto")
    assert is_square(outline_site.outline_polygon) and outline_site.outline_note is None


def test_staff_outline_of_this_baseline_survives_the_job_running_again(outline_site, lesion_scene, square_proposal):
    baseline = upload(outline_site, lesion_scene[0])
    staff = [[10, 10], [60, 10], [60, 50]]
    outline_site.outline_polygon, outline_site.outline_source = staff, "staff"
    db.session.commit()
    processing.process_photo(baseline)  # a job that runs twice
    db.session.refresh(outline_site)
    assert (outline_site.outline_polygon, outline_site.outline_source) == (staff, "staff")
    assert outline_site.outline_photo_id == baseline.id


def test_staff_outline_of_an_older_baseline_is_proposed_again_with_a_note(outline_site, lesion_scene,
                                                                          square_proposal):
    upload(outline_site, lesion_scene[0])
    outline_site.outline_polygon, outline_site.outline_source = [[10, 10], [60, 10], [60, 50]], "staff"
    db.session.commit()
    new = upload(outline_site, skin_photo(22)[0])
    assert (outline_site.outline_source, outline_site.outline_photo_id) == ("auto", new.id)
    assert is_square(outline_site.outline_polygon)
    assert "replaced the one staff outlined the scar on" in outline_site.outline_note
    assert "proposed again automatically" in outline_site.outline_note


def test_an_older_baseline_processed_late_leaves_the_newer_outline(outline_site, lesion_scene, square_proposal):
    older = receive_photo(outline_site, jpeg(lesion_scene[0]), kind="baseline", enqueue=False)
    newer = upload(outline_site, skin_photo(22)[0])
    assert outline_site.outline_photo_id == newer.id
    processing.process_photo(older)  # the older one's job runs after the newer was accepted
    db.session.refresh(outline_site)
    assert outline_site.outline_photo_id == newer.id


def test_a_failing_proposal_does_not_fail_the_baseline(outline_site, lesion_scene, monkeypatch):
    def broken(image, modality=None):
        raise RuntimeError("segmentation broke")

    monkeypatch.setattr("followup.intake.outlines.propose_site", broken)
    photo = upload(outline_site, lesion_scene[0])
    assert photo.status == "done" and outline_site.outline_polygon is None


# --- margins -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, margin", [("melanoma-0", 20), ("melanoma-IA", 20), ("melanoma-IB-IV", 20),
                                          ("scc", 10), ("scc-low", 10), ("bcc", 10), ("bcc-low", 10), ("other", 10)])
def test_site_margin_by_diagnosis(name, margin):
    assert PROTOCOLS[name].site_margin_mm == margin


def test_clinic_overrides_the_site_margin():
    assert resolve_protocol("bcc", {"bcc": {"site_margin_mm": 15}}).site_margin_mm == 15
    assert resolve_protocol("bcc", {"scc": {"site_margin_mm": 15}}).site_margin_mm == 10


# --- follow-up processing with the outline ----------------------------------------------------------------

class FakeAnalyser:
    """Returns a crafted analysis: one changed region, in or outside the site; records what it was given."""

    def __init__(self, *, in_site: bool, score: float = 0.9, dx: float = 0.0, flag: bool = True):
        self.in_site, self.score, self.dx, self.flag, self.calls = in_site, score, dx, flag, []

    def analyse(self, reference_image, moving_image, **kwargs):
        self.calls.append(kwargs)
        h, w = reference_image.shape[:2]
        change = np.zeros((h, w), bool)
        change[20:40, 400:440] = True
        region = {"bbox": [400, 20, 440, 40], "area_px": 800, "growth_pct": None, "delta_e": 12.0,
                  "distance_to_lesion_px": 150.0, "kind": "new_lesion", "score": self.score, "in_site": self.in_site}
        outline = kwargs["reference_mask"] if kwargs["reference_mask"] is not None else np.zeros((h, w), bool)
        words = "a new dark spot about 150 px from the lesion or scar"
        # The follow-up sits dx px left of the reference: follow-up (x, y) -> reference (x + dx, y).
        homography = np.array([[1.0, 0, self.dx], [0, 1, 0], [0, 0, 1]])
        result = PairAnalysis(
            Quality(True, [], {}), True, homography, 0.95, reference_image.copy(), np.ones((h, w), bool), change,
            self.score, change.astype(np.float32), [region],
            [words if self.in_site else words + " (outside the watched site)"], {}, self.flag,
            modality=kwargs["modality"] or "clinical", outline=outline, site_mask=outline,
            site_flag=self.flag and self.in_site)
        return result, Recurrence(self.score, [], [], "fake-1")


@pytest.fixture
def melanoma_site(world):
    patient = create_patient(world.clinic, name="Ada Lovelace", phone="+447700900123", sms_consent=True)
    site = create_site(patient, body_site="left forearm", diagnosis="melanoma", stage="IIA",
                       excision_date=date.today() - timedelta(days=200), dermatologist=world.derm)
    db.session.commit()
    return site


def followup_with(app, site, analyser, **kwargs) -> Photo:
    app.extensions["analyser"] = analyser
    return upload(site, skin_photo(21)[0], kind="followup", **kwargs)


def test_processing_passes_the_outline_modality_and_margin(app, melanoma_site, lesion_scene, square_proposal):
    baseline = upload(melanoma_site, lesion_scene[0], modality="clinical")
    analyser = FakeAnalyser(in_site=True)
    photo = followup_with(app, melanoma_site, analyser)
    [call] = analyser.calls
    assert np.array_equal(call["reference_mask"], polygon_to_mask(melanoma_site.outline_polygon, SHAPE))
    assert call["modality"] == "clinical"  # the baseline's declared modality: the follow-up declared none
    assert call["site_margin_px"] == pytest.approx(20 * pixels_per_mm(SHAPE, modality="clinical"))
    analysis = db.session.execute(db.select(Analysis).where(Analysis.photo_id == photo.id)).scalar_one()
    assert (analysis.site_flag, analysis.modality, analysis.reference_photo_id) == (True, "clinical", baseline.id)
    assert analysis.regions[0]["in_site"] is True
    [alert] = db.session.execute(db.select(Alert)).scalars()
    assert alert.priority == 1 and not any("outside the watched site" in r for r in alert.reasons)


def test_the_follow_ups_declared_modality_wins(app, melanoma_site, lesion_scene, square_proposal):
    upload(melanoma_site, lesion_scene[0], modality="clinical")
    analyser = FakeAnalyser(in_site=True)
    followup_with(app, melanoma_site, analyser, modality="dermoscopy")
    assert analyser.calls[0]["modality"] == "dermoscopy"
    assert analyser.calls[0]["site_margin_px"] == pytest.approx(20 * pixels_per_mm(SHAPE, modality="dermoscopy"))


def test_without_an_outline_the_pipeline_proposes_its_own(app, melanoma_site, lesion_scene, no_proposal):
    upload(melanoma_site, lesion_scene[0])
    analyser = FakeAnalyser(in_site=True)
    followup_with(app, melanoma_site, analyser)
    assert analyser.calls[0]["reference_mask"] is None and analyser.calls[0]["modality"] is None


def test_change_only_outside_the_site_is_priority_2_and_says_so(app, melanoma_site, lesion_scene, square_proposal):
    upload(melanoma_site, lesion_scene[0])
    photo = followup_with(app, melanoma_site, FakeAnalyser(in_site=False, score=0.95),
                          answers={"bleed": True, "grew": True})  # in the site, either would make it priority 1
    [alert] = db.session.execute(db.select(Alert)).scalars()
    assert (alert.kind, alert.priority, alert.photo_id) == ("change", 2, photo.id)
    assert "the change is outside the watched site (20 mm around the scar)" in alert.reasons
    analysis = db.session.execute(db.select(Analysis).where(Analysis.photo_id == photo.id)).scalar_one()
    assert (analysis.flag, analysis.site_flag, analysis.regions[0]["in_site"]) == (True, False, False)


def test_previous_follow_up_gets_the_outline_through_its_alignment(app, melanoma_site, lesion_scene,
                                                                   square_proposal):
    upload(melanoma_site, lesion_scene[0])
    analyser = FakeAnalyser(in_site=True, dx=30, flag=False)  # no flag: nothing stops the second comparison
    followup_with(app, melanoma_site, analyser)
    followup_with(app, melanoma_site, analyser)
    assert len(analyser.calls) == 3  # first vs baseline; second vs baseline and vs the first
    expected = polygon_to_mask([[x - 30, y] for x, y in melanoma_site.outline_polygon], SHAPE)
    assert iou(analyser.calls[-1]["reference_mask"], expected) > 0.95
