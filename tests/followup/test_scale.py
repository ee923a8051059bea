"""Issue 15 in the product: a photo job measures changes in mm with the reference sticker (synthetic: the
sticker rendered into a generated skin photo, as tests/registration/test_sticker_detect.py does)."""

import numpy as np
import pytest

from followup.db import db
from followup.intake.photos import receive_photo
from followup.models import Alert, Analysis, Site
from registration import make_pair, sticker
from tests.followup.helpers import login
from tests.helpers import jpeg, skin_photo

STICKER = sticker.perspective_homography(width_px=170, centre=(130, 470), rotation_deg=10, tilt_deg=15)


@pytest.fixture(scope="module")
def scene():
    """Baseline with the sticker, a follow-up with a new lesion and the sticker moved with the skin, and the
    same pair without a sticker."""
    image, lesion = skin_photo(5, (600, 800))
    with_sticker, _ = sticker.place_sticker(image, STICKER)
    marked = make_pair(with_sticker, lesion_mask=lesion, kind="new_lesion", rng=np.random.default_rng(3),
                       rotation=10.0, scale_range=(0.95, 1.05))
    plain = make_pair(image, lesion_mask=lesion, kind="new_lesion", rng=np.random.default_rng(3),
                      rotation=10.0, scale_range=(0.95, 1.05))
    return marked, plain


@pytest.fixture
def site(app, world, site_id):
    return db.session.get(Site, site_id)


def _analyse(site, baseline, followup) -> Analysis:
    assert receive_photo(site, jpeg(baseline), kind="baseline", answers={}).status == "done"
    photo = receive_photo(site, jpeg(followup), kind="followup", answers={})
    return db.session.execute(db.select(Analysis).where(Analysis.photo_id == photo.id,
                                                        Analysis.comparison == "baseline")).scalar_one()


def test_sticker_in_both_photos_gives_sizes_in_mm(client, world, site, scene):
    marked, _ = scene
    analysis = _analyse(site, marked.reference_image, marked.moving_image)
    truth = sticker.local_scale(STICKER)  # mm per baseline pixel
    assert analysis.scale_source == "marker"
    assert analysis.reference_mm_per_px == pytest.approx(truth, rel=0.03)
    own = db.session.execute(db.select(Analysis).where(Analysis.comparison == "quality")).scalar_one()
    assert own.scale_source == "marker" and own.scale_mm_per_px == pytest.approx(truth, rel=0.03)
    assert analysis.scale_mm_per_px == pytest.approx(
        sticker.local_scale(np.linalg.inv(marked.homography) @ STICKER), rel=0.03)
    assert analysis.regions
    for region in analysis.regions:
        assert region["area_mm2"] == pytest.approx(region["area_px"] * truth**2, rel=0.07)
        assert region["diameter_mm"] == pytest.approx(2 * np.sqrt(region["area_mm2"] / np.pi), rel=0.01)
    assert not any(" px " in r for r in analysis.reasons)
    assert any("mm across" in r for r in analysis.reasons)

    body = client.get(f"/api/v1/photos/{analysis.photo_id}",
                      headers=world.headers(client, "derm@north.test")).get_json()
    api = body["analysis"]
    assert api["scale_source"] == "marker" and api["scale_mm_per_px"] == pytest.approx(analysis.scale_mm_per_px)
    assert api["reference_mm_per_px"] == pytest.approx(analysis.reference_mm_per_px)
    assert isinstance(api["scale_reasons"], list)
    assert api["regions"][0]["diameter_mm"] == pytest.approx(analysis.regions[0]["diameter_mm"])

    alert = db.session.execute(db.select(Alert).where(Alert.photo_id == analysis.photo_id)).scalar_one()
    login(client)
    page = client.get(f"/alerts/{alert.id}").get_data(as_text=True)
    assert "mm per pixel, from the reference sticker" in page
    assert f"{analysis.regions[0]['diameter_mm']:.1f} mm across" in page
    assert "mm²" in page and "no scale in this photo" not in page


def test_without_a_sticker_there_is_no_scale_and_the_page_says_so(client, world, site, scene):
    _, plain = scene
    analysis = _analyse(site, plain.reference_image, plain.moving_image)
    assert analysis.scale_source is None and analysis.scale_mm_per_px is None
    own = db.session.execute(db.select(Analysis).where(Analysis.comparison == "quality")).scalar_one()
    assert own.scale_source is None and own.scale_reasons == ["no scale in this photo"]
    assert "no scale in this photo" in analysis.scale_reasons
    assert all(r["area_mm2"] is None and r["diameter_mm"] is None and r["distance_to_scar_mm"] is None
               for r in analysis.regions)
    body = client.get(f"/api/v1/photos/{analysis.photo_id}",
                      headers=world.headers(client, "derm@north.test")).get_json()
    assert body["analysis"]["scale_source"] is None and body["analysis"]["scale_mm_per_px"] is None
    alert = db.session.execute(db.select(Alert).where(Alert.photo_id == analysis.photo_id)).scalar_one()
    login(client)
    page = client.get(f"/alerts/{alert.id}").get_data(as_text=True)
    assert "no scale in this photo" in page and "mm across" not in page


def test_follow_up_without_its_sticker_is_measured_through_the_baseline_and_asked_for_it(site, scene):
    marked, plain = scene
    baseline_only, _ = sticker.place_sticker(plain.reference_image, STICKER)
    analysis = _analyse(site, baseline_only, plain.moving_image)
    assert analysis.scale_source == "marker"
    assert analysis.reference_mm_per_px == pytest.approx(sticker.local_scale(STICKER), rel=0.03)
    assert any("keep the sticker beside the scar next time" in r for r in analysis.scale_reasons)
    photo = db.session.get(type(analysis.photo), analysis.photo_id)
    assert photo.status == "done"  # a suggestion, not a refusal


def test_the_clinic_scale_measures_photos_without_a_sticker(client, world, site, scene, square_proposal):
    """The scar's length measured at enrolment over the outline's longest extent (SQUARE: 100 x 80 px)."""
    from tests.followup.outline_cases import SQUARE

    _, plain = scene
    site.scar_length_mm = 32.0
    db.session.commit()
    analysis = _analyse(site, plain.reference_image, plain.moving_image)
    truth = 32.0 / np.hypot(SQUARE[2][0] - SQUARE[0][0], SQUARE[2][1] - SQUARE[0][1])
    assert analysis.scale_source == "clinic"
    assert analysis.reference_mm_per_px == pytest.approx(truth, rel=1e-4)
    assert analysis.scale_mm_per_px == pytest.approx(truth, rel=0.1)  # the follow-up is within 5 % in zoom
    assert "no scale in this photo" not in analysis.scale_reasons
    assert any("measured in clinic (32 mm)" in r for r in analysis.scale_reasons)
    assert all(r["area_mm2"] == pytest.approx(r["area_px"] * truth**2, rel=0.01) for r in analysis.regions)
    body = client.get(f"/api/v1/sites/{site.id}", headers=world.headers(client, "derm@north.test")).get_json()
    assert body["scar_length_mm"] == 32.0 and body["clinic_mm_per_px"] == pytest.approx(truth, rel=1e-4)


def test_the_scar_length_is_entered_with_the_site_on_the_api_and_the_page(client, world, patient_id):
    headers = world.headers(client, "derm@north.test")
    body = {"body_site": "back", "diagnosis": "bcc", "excision_date": "2025-01-01"}
    created = client.post(f"/api/v1/patients/{patient_id}/sites", headers=headers,
                          json={**body, "scar_length_mm": 24.5})
    assert created.status_code == 201
    assert created.get_json()["scar_length_mm"] == 24.5 and created.get_json()["clinic_mm_per_px"] is None
    plain = client.post(f"/api/v1/patients/{patient_id}/sites", headers=headers, json=body).get_json()
    assert plain["scar_length_mm"] is None
    for bad in (0, -3, 9999, "long"):
        response = client.post(f"/api/v1/patients/{patient_id}/sites", headers=headers,
                               json={**body, "scar_length_mm": bad})
        assert response.status_code == 422 and "scar_length_mm" in response.get_json()["error"]["message"]
    assert "scar_length_mm" in client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]["SiteCreate"][
        "properties"]

    login(client)
    page = client.post(f"/patients/{patient_id}/sites", data={**body, "body_site": "scalp", "scar_length_mm": "18,5"},
                       follow_redirects=True).get_data(as_text=True)
    assert "scar 18.5 mm" in page
    refused = client.post(f"/patients/{patient_id}/sites", data={**body, "scar_length_mm": "0.1"},
                          follow_redirects=True).get_data(as_text=True)
    assert "scar&#39;s length must be between" in refused or "scar's length must be between" in refused


def test_a_follow_up_without_its_sticker_gets_a_gentle_suggestion_not_a_refusal(site, scene):
    from followup.analysis.processing import STICKER_MISSING

    marked, plain = scene
    baseline_only, _ = sticker.place_sticker(plain.reference_image, STICKER)
    analysis = _analyse(site, baseline_only, plain.moving_image)
    assert STICKER_MISSING in analysis.reasons and analysis.quality["usable"]
    assert db.session.get(type(analysis.photo), analysis.photo_id).status == "done"


def test_a_sticker_over_the_scar_is_refused_with_what_to_do(site, scene, square_proposal):
    """SQUARE (x 100-200, y 100-180) is the scar; the follow-up's sticker sits on it."""
    from followup.analysis.processing import STICKER_ON_SCAR

    image, lesion = skin_photo(5, (600, 800))
    pair = make_pair(image, lesion_mask=lesion, kind="none", rng=np.random.default_rng(4), rotation=5.0,
                     scale_range=(0.98, 1.02))
    x, y, w = np.linalg.inv(pair.homography) @ [150.0, 140.0, 1.0]  # the scar's middle, in the follow-up
    on_scar = sticker.perspective_homography(width_px=150, centre=(x / w, y / w), rotation_deg=0, tilt_deg=0)
    covered, _ = sticker.place_sticker(pair.moving_image, on_scar)
    analysis = _analyse(site, pair.reference_image, covered)
    assert analysis.registered and not analysis.quality["usable"]
    assert STICKER_ON_SCAR in analysis.quality["reasons"]
    photo = db.session.get(type(analysis.photo), analysis.photo_id)
    assert photo.status == "rejected" and "place it beside the scar" in photo.status_detail


def test_both_stickers_put_both_photos_in_true_colour_before_the_comparison(site, scene):
    marked, _ = scene
    unchanged = make_pair(marked.reference_image, kind="none", rng=np.random.default_rng(8), rotation=5.0,
                          scale_range=(0.98, 1.02))
    warm = sticker.colour_cast(unchanged.moving_image, kelvin=4500, ev=-0.5)
    analysis = _analyse(site, marked.reference_image, warm)
    assert analysis.quality.get("colour_corrected") is True and analysis.quality["colour_delta_e"] < 5
    assert not analysis.flag


def test_the_comparison_with_the_previous_photo_takes_that_photo_s_scale(site, scene):
    """The sticker only on the baseline: the first follow-up is measured through it, the second follow-up's
    comparison with the first takes the scale the first was given."""
    marked, plain = scene
    image, lesion = skin_photo(5, (600, 800))
    baseline_only, _ = sticker.place_sticker(plain.reference_image, STICKER)
    first = _analyse(site, baseline_only, plain.moving_image)
    again = make_pair(plain.reference_image, lesion_mask=lesion, kind="none", rng=np.random.default_rng(12),
                      rotation=5.0, scale_range=(0.98, 1.02))
    photo = receive_photo(site, jpeg(again.moving_image), kind="followup", answers={})
    previous = db.session.execute(db.select(Analysis).where(Analysis.photo_id == photo.id,
                                                            Analysis.comparison == "previous")).scalar_one()
    assert previous.reference_photo_id == first.photo_id
    assert previous.scale_source == "marker"
    assert previous.reference_mm_per_px == pytest.approx(first.scale_mm_per_px)
    assert previous.scale_mm_per_px == pytest.approx(first.scale_mm_per_px, rel=0.15)
    assert any("previous photo" in r for r in previous.scale_reasons)


def test_the_watched_margin_is_in_true_mm_with_a_scale(app, site, scene, square_proposal):
    from followup.intake import outlines
    from tests.followup.test_outline import FakeAnalyser

    _, plain = scene
    site.scar_length_mm = 32.0
    db.session.commit()
    assert receive_photo(site, jpeg(plain.reference_image), kind="baseline", answers={}).status == "done"
    app.extensions["analyser"] = analyser = FakeAnalyser(in_site=True)
    receive_photo(site, jpeg(plain.moving_image), kind="followup", answers={})
    mm_per_px = 32.0 / np.hypot(100, 80)  # SQUARE's diagonal
    assert analyser.calls[0]["site_margin_px"] == pytest.approx(outlines.site_margin_mm(site) / mm_per_px)


def test_the_scar_length_can_be_set_later_on_the_api_and_the_page(client, world, site):
    headers = world.headers(client, "derm@north.test")
    response = client.patch(f"/api/v1/sites/{site.id}", headers=headers, json={"scar_length_mm": 21.0})
    assert response.status_code == 200 and response.get_json()["scar_length_mm"] == 21.0
    for bad in ({"scar_length_mm": 0}, {"scar_length_mm": "x"}, {}, {"body_site": "x", "scar_length_mm": 5}):
        assert client.patch(f"/api/v1/sites/{site.id}", headers=headers, json=bad).status_code == 422
    other = client.patch(f"/api/v1/sites/{site.id}", headers=world.headers(client, "derm@south.test"),
                         json={"scar_length_mm": 5})
    assert other.status_code == 404
    assert client.patch(f"/api/v1/sites/{site.id}", headers=headers, json={"scar_length_mm": None}).get_json()[
        "scar_length_mm"] is None

    login(client)
    page = client.post(f"/sites/{site.id}/scar-length", data={"scar_length_mm": "27"},
                       follow_redirects=True).get_data(as_text=True)
    assert "Scar length saved." in page and "scar 27 mm" in page
    db.session.refresh(site)
    assert site.scar_length_mm == 27.0
    page = client.post(f"/sites/{site.id}/scar-length", data={"scar_length_mm": "9000"},
                       follow_redirects=True).get_data(as_text=True)
    assert "was not saved" in page
    db.session.refresh(site)
    assert site.scar_length_mm == 27.0


def test_fhir_region_observations_carry_mm_beside_pixels():
    from followup.fhir.resources import observation_parts

    region = {"kind": "redness", "area_px": 400, "distance_to_lesion_px": 60.0}
    scaled = Analysis(change_score=0.9, regions=[dict(region, area_mm2=4.0, diameter_mm=2.26,
                                                      distance_to_scar_mm=6.0)])
    [(_, _), (_, observation)] = observation_parts(scaled)
    units = [(c["code"]["coding"][0]["code"], c["valueQuantity"]["unit"]) for c in observation["component"]]
    assert units == [("changed-area", "px"), ("distance-to-lesion", "px"), ("changed-area", "mm2"),
                     ("distance-to-lesion", "mm")]
    unscaled = Analysis(change_score=0.9, regions=[dict(region, area_mm2=None, distance_to_scar_mm=None)])
    assert len(observation_parts(unscaled)[1][1]["component"]) == 2
