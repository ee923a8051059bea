"""Photo jobs end to end on synthetic truth: baseline check, comparison, overlays, alerts, retakes."""

import numpy as np
import pytest

from followup.db import db
from followup.intake.photos import receive_photo
from followup.models import Alert, Analysis, OutboundMessage, Photo, Site
from followup.records import links
from registration import make_pair
from tests.helpers import jpeg, skin_photo


@pytest.fixture(scope="module")
def scene():
    return skin_photo(21)


@pytest.fixture
def site(app, world, site_id):
    return db.session.get(Site, site_id)


def upload(site, pixels, kind="followup", **answers) -> Photo:
    return receive_photo(site, jpeg(pixels), kind=kind, answers=answers)


def alerts():
    return list(db.session.execute(db.select(Alert).order_by(Alert.id)).scalars())


def test_new_lesion_is_analysed_and_raises_an_alert(app, site, scene):
    image, lesion = scene
    assert upload(site, image, kind="baseline").status == "done"
    pair = make_pair(image, lesion_mask=lesion, kind="new_lesion", rng=np.random.default_rng(3), rotation=20.0)
    token, _ = links.create_link(site)
    db.session.commit()
    photo = receive_photo(site, jpeg(pair.moving_image), kind="followup", answers={"bleed": True},
                          link=links.resolve_link(token))
    db.session.refresh(photo)
    assert photo.status == "done"
    with pytest.raises(links.LinkProblem, match="used"):
        links.resolve_link(token)
    analysis = db.session.execute(db.select(Analysis).where(Analysis.photo_id == photo.id)).scalar_one()
    assert analysis.registered and analysis.flag and analysis.regions
    assert set(analysis.overlays) >= {"aligned", "outline", "heatmap", "baseline"}
    assert all(app.extensions["storage"].exists(key) for key in analysis.overlays.values())
    [alert] = alerts()
    assert (alert.kind, alert.photo_id, alert.status) == ("change", photo.id, "open")
    assert alert.reasons and alert.recurrence_score == pytest.approx(analysis.recurrence_score)


def test_unchanged_recapture_raises_nothing_and_is_compared_with_the_previous_photo(app, site, scene):
    image, lesion = scene
    upload(site, image, kind="baseline")
    for seed in (4, 5):
        pair = make_pair(image, lesion_mask=lesion, kind="none", rng=np.random.default_rng(seed), rotation=15.0)
        photo = upload(site, pair.moving_image)
    comparisons = sorted(a.comparison for a in db.session.execute(
        db.select(Analysis).where(Analysis.photo_id == photo.id)).scalars())
    assert comparisons == ["baseline", "previous"]
    assert alerts() == []


def test_unreadable_photo_is_rejected_with_reasons_then_goes_to_a_human(app, site, scene):
    image, _ = scene
    upload(site, image, kind="baseline")
    other, _ = skin_photo(999)
    first = upload(site, (other * 0.05).astype(np.uint8))
    db.session.refresh(first)
    assert first.status == "rejected" and first.status_detail
    assert alerts() == [], "one bad photo: ask the patient first"
    [retake] = db.session.execute(db.select(OutboundMessage).where(OutboundMessage.purpose == "retake")).scalars()
    assert retake.status == "pending" and "could not use it" in retake.body
    assert "https://scarwatch.test/u/" in links.open_links(retake.body)
    upload(site, (other * 0.05).astype(np.uint8) + 1)
    [alert] = alerts()
    assert alert.kind == "unreadable"


def test_follow_up_without_baseline_goes_to_a_human(app, site, scene):
    photo = upload(site, scene[0])
    db.session.refresh(photo)
    assert photo.status == "failed" and "baseline" in photo.status_detail
    assert [a.kind for a in alerts()] == ["needs_review"]


def test_patient_report_without_visible_change_still_reaches_a_person(app, site, scene):
    image, lesion = scene
    upload(site, image, kind="baseline")
    pair = make_pair(image, lesion_mask=lesion, kind="none", rng=np.random.default_rng(8), rotation=10.0)
    upload(site, pair.moving_image, bleed=True, grew=True)
    [alert] = alerts()
    assert alert.kind == "patient_report" and alert.priority == 3
    assert "bleeding" in alert.reasons[0]


def test_photo_api_shows_the_analysis(client, world, site, scene):
    image, lesion = scene
    upload(site, image, kind="baseline")
    pair = make_pair(image, lesion_mask=lesion, kind="darkening", rng=np.random.default_rng(9), rotation=10.0)
    photo = upload(site, pair.moving_image)
    body = client.get(f"/api/v1/photos/{photo.id}", headers=world.headers(client, "derm@north.test")).get_json()
    assert body["status"] == "done"
    assert body["analysis"]["comparison"] == "baseline"
    assert 0.0 <= body["analysis"]["change_score"] <= 1.0 and len(body["analysis"]["homography"]) == 3


def test_sudden_change_since_the_last_photo_alerts_when_the_baseline_agrees(app, site, scene):
    image, lesion = scene
    upload(site, image, kind="baseline")
    pair = make_pair(image, lesion_mask=lesion, kind="none", rng=np.random.default_rng(4), rotation=10.0)
    upload(site, pair.moving_image)
    pair = make_pair(image, lesion_mask=lesion, kind="new_lesion", rng=np.random.default_rng(6), rotation=10.0)
    photo = upload(site, pair.moving_image)
    analyses = {a.comparison: a for a in db.session.execute(
        db.select(Analysis).where(Analysis.photo_id == photo.id)).scalars()}
    assert set(analyses) == {"baseline", "previous"}
    assert analyses["previous"].flag
    [alert] = alerts()
    assert alert.kind == "change"
