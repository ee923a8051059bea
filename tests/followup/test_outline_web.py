"""The outline on the staff pages: the patient page draws it and the margin and takes corrections (a click or a
drawn polygon), enrolment leads there, and the alert page's legend and regions outside the watched site."""
import io
from datetime import date, timedelta

import numpy as np
import pytest

from followup.db import db
from followup.models import Alert, AuditEvent, Photo, Site
from registration import pixels_per_mm, polygon_to_mask
from tests.conftest import PASSWORD
from tests.followup.cases import flagged_case
from tests.followup.outline_cases import SHAPE, iou, jpeg, upload
from tests.helpers import skin_photo


@pytest.fixture
def signed_in(client, world):
    response = client.post("/login", data={"email": world.derm.email, "password": PASSWORD})
    assert response.status_code == 302
    return client


def patient_page(client, site) -> str:
    response = client.get(f"/patients/{site.patient_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_patient_page_draws_the_outline_and_the_margin(signed_in, outline_site, lesion_scene, square_proposal):
    baseline = upload(outline_site, lesion_scene[0], modality="clinical")
    page = patient_page(signed_in, outline_site)
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in outline_site.outline_polygon)
    assert f'<polygon class="scar-outline" points="{points}"' in page
    margin = 10 * pixels_per_mm(SHAPE, modality="clinical")
    assert f'stroke-width="{2 * margin:.1f}"' in page  # the watched site: 10 mm around a BCC scar
    assert "Proposed automatically" in page and "10 mm around the scar" in page
    assert f'src="/photos/{baseline.id}/image"' in page and 'type="image" name="tap"' in page


def test_patient_page_asks_staff_when_nothing_was_proposed(signed_in, outline_site, lesion_scene, no_proposal):
    baseline = upload(outline_site, lesion_scene[0])
    page = patient_page(signed_in, outline_site)
    assert "Nothing stood out to outline automatically" in page
    assert 'class="scar-outline"' not in page and f'name="photo_id" value="{baseline.id}"' in page


def test_patient_page_says_when_a_new_baseline_replaced_a_staff_outline(signed_in, outline_site, lesion_scene,
                                                                        square_proposal):
    upload(outline_site, lesion_scene[0])
    outline_site.outline_polygon, outline_site.outline_source = [[10, 10], [60, 10], [60, 50]], "staff"
    db.session.commit()
    upload(outline_site, skin_photo(22)[0])
    page = patient_page(signed_in, outline_site)
    assert "replaced the one staff outlined the scar on" in page and "Proposed automatically" in page


def test_patient_page_before_the_baseline_is_accepted(signed_in, outline_site):
    page = patient_page(signed_in, outline_site)
    assert "No accepted baseline photo yet" in page and 'class="outline-editor"' not in page


def test_page_tap_and_drawn_outline_are_saved(signed_in, outline_site, lesion_scene, no_proposal):
    image, lesion = lesion_scene
    baseline = upload(outline_site, image)
    ys, xs = np.nonzero(lesion)
    response = signed_in.post(f"/sites/{outline_site.id}/outline", data={
        "photo_id": baseline.id, "shown_width": 240, "tap.x": xs.mean() / 2, "tap.y": ys.mean() / 2})  # shown at half
    assert response.status_code == 303 and response.headers["Location"].endswith(f"#outline-{outline_site.id}")
    db.session.refresh(outline_site)
    assert outline_site.outline_source == "staff"
    assert iou(polygon_to_mask(outline_site.outline_polygon, image.shape), lesion) > 0.5
    response = signed_in.post(f"/sites/{outline_site.id}/outline", data={
        "photo_id": baseline.id, "action": "polygon", "polygon": "[[100, 100], [200, 100], [200, 180]]"},
        follow_redirects=True)
    assert "Outline saved." in response.get_data(as_text=True)
    db.session.refresh(outline_site)
    assert outline_site.outline_polygon == [[100, 100], [200, 100], [200, 180]]
    methods = [e.detail["method"] for e in db.session.execute(
        db.select(AuditEvent).where(AuditEvent.action == "edit_outline").order_by(AuditEvent.id)).scalars()]
    assert methods == ["point", "polygon"]


@pytest.mark.parametrize("form, message", [
    ({"tap.x": "0", "tap.y": "0"}, "Click on the scar"),
    ({"tap.x": "nan", "tap.y": "3"}, "outside the"),
    ({"action": "polygon", "polygon": "[[1, 1], [2, 2]]"}, "at least 3 points"),
    ({"action": "polygon", "polygon": "not json"}, "form was incomplete"),
    ({"action": "polygon", "polygon": ""}, "Click around the scar"),
    ({"photo_id": "999", "action": "polygon", "polygon": "[[1, 1], [50, 1], [50, 40]]"}, "not the site&#39;s baseline"),
])
def test_page_refuses_bad_outlines_with_a_message(signed_in, outline_site, lesion_scene, no_proposal, form, message):
    baseline = upload(outline_site, lesion_scene[0])
    response = signed_in.post(f"/sites/{outline_site.id}/outline", data={"photo_id": baseline.id, **form},
                              follow_redirects=True)
    assert response.status_code == 200 and message in response.get_data(as_text=True)
    db.session.refresh(outline_site)
    assert outline_site.outline_polygon is None


def test_page_outline_of_another_clinics_site_is_404(client, world, outline_site, lesion_scene, no_proposal):
    upload(outline_site, lesion_scene[0])
    client.post("/login", data={"email": world.other_derm.email, "password": PASSWORD})
    response = client.post(f"/sites/{outline_site.id}/outline",
                           data={"action": "polygon", "polygon": "[[1, 1], [9, 1], [9, 9]]"})
    assert response.status_code == 404


def test_enrolment_leads_to_the_outline(signed_in, lesion_scene, square_proposal):
    response = signed_in.post("/patients/new", content_type="multipart/form-data", data={
        "name": "Ada Lovelace", "phone": "+447700900123", "body_site": "left forearm", "diagnosis": "melanoma",
        "excision_date": (date.today() - timedelta(days=20)).isoformat(),
        "baseline": (io.BytesIO(jpeg(lesion_scene[0])), "b.jpg")})
    assert response.status_code == 303
    site = db.session.execute(db.select(Site)).scalar_one()
    assert response.headers["Location"].endswith(f"/patients/{site.patient_id}#outline-{site.id}")
    page = signed_in.get(response.headers["Location"]).get_data(as_text=True)
    assert "Check the scar&#39;s outline" in page and 'class="scar-outline"' in page
    assert "20 mm around the scar" in page


def test_alert_page_has_the_legend_and_marks_regions_outside_the_site(signed_in, outline_site):
    _, _, analysis = flagged_case(outline_site)
    analysis.regions = [dict(analysis.regions[0], in_site=True), dict(analysis.regions[0], in_site=False)]
    db.session.commit()
    alert = db.session.execute(db.select(Alert)).scalar_one()
    page = signed_in.get(f"/alerts/{alert.id}").get_data(as_text=True)
    assert "yellow = change" in page and "white = scar" in page and "blue = watched site (10 mm" in page
    regions = page.split('<ol class="regions">')[1].split("</ol>")[0].split("<li>")[1:]
    assert len(regions) == 2
    assert "outside the watched site" not in regions[0] and "outside the watched site" in regions[1]


@pytest.mark.parametrize("said, stored", [("dermoscopy", "dermoscopy"), ("clinical", "clinical"), ("", None)])
def test_staff_upload_says_how_the_photo_was_taken(signed_in, outline_site, lesion_scene, said, stored):
    response = signed_in.post(f"/sites/{outline_site.id}/photos", data={
        "kind": "baseline", "modality": said, "photo": (io.BytesIO(jpeg(lesion_scene[0])), "scar.jpg")},
        content_type="multipart/form-data")
    assert response.status_code == 303
    photo = db.session.scalars(db.select(Photo).where(Photo.site_id == outline_site.id)).one()
    assert photo.modality == stored
    assert 'name="modality"' in patient_page(signed_in, outline_site)
