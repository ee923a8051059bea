"""The outline and the photo modality in the API: PUT /sites/{id}/outline, the site's and photo's outputs, and
the upload's optional modality."""
import io

import numpy as np
import pytest

from followup.db import db
from followup.models import AuditEvent, Photo
from registration import polygon_to_mask
from tests.followup.outline_cases import SQUARE, iou, jpeg, upload
from tests.helpers import skin_photo


@pytest.fixture
def baseline(outline_site, lesion_scene, no_proposal):
    """The site's accepted baseline (480 x 360), with no outline yet."""
    return upload(outline_site, lesion_scene[0])


def put(client, world, site_id, body, email="derm@north.test"):
    return client.put(f"/api/v1/sites/{site_id}/outline", headers=world.headers(client, email), json=body)


def test_put_a_drawn_polygon(client, world, outline_site, baseline):
    response = put(client, world, outline_site.id, {"polygon": SQUARE, "photo_id": baseline.id})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"polygon": SQUARE, "source": "staff", "photo_id": baseline.id, "margin_mm": 10.0,
                                   "note": None}
    db.session.refresh(outline_site)
    assert (outline_site.outline_polygon, outline_site.outline_source) == (SQUARE, "staff")
    event = db.session.execute(db.select(AuditEvent).where(AuditEvent.action == "edit_outline")).scalar_one()
    assert (event.record_type, event.record_id, event.user_id) == ("site", outline_site.id, world.derm.id)
    shown = client.get(f"/api/v1/sites/{outline_site.id}", headers=world.headers(client, "derm@north.test"))
    assert shown.get_json()["outline"]["polygon"] == SQUARE and shown.get_json()["outline"]["source"] == "staff"


def test_site_without_an_outline_shows_null(client, world, outline_site, baseline):
    shown = client.get(f"/api/v1/sites/{outline_site.id}", headers=world.headers(client, "derm@north.test"))
    assert shown.status_code == 200 and shown.get_json()["outline"] is None


def test_put_a_tap_outlines_the_lesion_under_it(client, world, outline_site, lesion_scene, baseline):
    image, lesion = lesion_scene
    ys, xs = np.nonzero(lesion)
    response = put(client, world, outline_site.id, {"point": [float(xs.mean()), float(ys.mean())]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["source"] == "staff" and body["photo_id"] == baseline.id
    assert iou(polygon_to_mask(body["polygon"], image.shape), lesion) > 0.5


@pytest.mark.parametrize("body, words", [
    ({"polygon": [[1, 1], [50, 1]]}, "polygon"),
    ({"polygon": [[1, 1], [50, 1], [500, 20]]}, "outside"),
    ({"polygon": [[1, 1], [50, 1], [-3, 20]]}, "outside"),
    ({"polygon": [[1, 1], [50, 1], [100, 1]]}, "no area"),
    ({"polygon": [[1, 1], [50, 1], [20]]}, "polygon"),
    ({"polygon": [[1, 1], [50, 1], ["a", 2]]}, "polygon"),
    ({"polygon": "square"}, "polygon"),
    ({"point": [480, 10]}, "outside"),
    ({"point": [10]}, "point"),
    ({"point": [10, 10], "polygon": SQUARE}, "either"),
    ({}, "either"),
    ({"polygon": SQUARE, "colour": "red"}, "colour"),
])
def test_bad_outlines_are_422(client, world, outline_site, baseline, body, words):
    response = put(client, world, outline_site.id, body)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_input" and words in error["message"]
    db.session.refresh(outline_site)
    assert outline_site.outline_polygon is None


def test_no_accepted_baseline_is_409(client, world, outline_site):
    response = put(client, world, outline_site.id, {"polygon": SQUARE})
    assert response.status_code == 409
    assert "no accepted baseline" in response.get_json()["error"]["message"]


def test_outline_for_a_baseline_that_is_no_longer_current_is_409(client, world, outline_site, baseline):
    response = put(client, world, outline_site.id, {"polygon": SQUARE, "photo_id": baseline.id + 1000})
    assert response.status_code == 409


def test_another_clinics_site_is_404(client, world, outline_site, baseline):
    response = put(client, world, outline_site.id, {"polygon": SQUARE}, email="derm@south.test")
    assert response.status_code == 404
    db.session.refresh(outline_site)
    assert outline_site.outline_polygon is None


def test_openapi_documents_the_outline_and_the_upload(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    route = spec["paths"]["/api/v1/sites/{site_id}/outline"]["put"]
    assert {"200", "409", "422"} <= set(route["responses"])
    schemas = spec["components"]["schemas"]
    assert {"polygon", "point", "photo_id"} <= set(schemas["OutlineRequest"]["properties"])
    assert {"polygon", "source", "photo_id", "margin_mm"} <= set(schemas["Outline"]["properties"])
    assert "outline" in schemas["Site"]["properties"] and "in_site" in schemas["Region"]["properties"]
    assert {"modality", "site_flag"} <= set(schemas["Analysis"]["properties"])
    upload_body = spec["paths"]["/api/v1/sites/{site_id}/photos"]["post"]["requestBody"]["content"]
    assert upload_body["multipart/form-data"]["schema"]["$ref"] == "#/components/schemas/PhotoUploadRequest"
    assert {"file", "kind", "modality", "bleed"} <= set(schemas["PhotoUploadRequest"]["properties"])


# --- upload with a modality -----------------------------------------------------------------------------

def post_photo(client, world, site_id, **fields):
    return client.post(f"/api/v1/sites/{site_id}/photos", headers=world.headers(client, "derm@north.test"),
                       content_type="multipart/form-data",
                       data={"file": (io.BytesIO(jpeg(skin_photo(21)[0])), "p.jpg"), "kind": "baseline", **fields})


def test_upload_declares_the_modality(client, world, outline_site, no_proposal):
    response = post_photo(client, world, outline_site.id, modality="dermoscopy")
    assert response.status_code == 202, response.get_json()
    photo_id = response.get_json()["id"]
    assert db.session.get(Photo, photo_id).modality == "dermoscopy"
    body = client.get(f"/api/v1/photos/{photo_id}", headers=world.headers(client, "derm@north.test")).get_json()
    assert body["modality"] == "dermoscopy"
    assert body["analysis"]["modality"] == "dermoscopy"  # the baseline is taken for what it was declared


def test_upload_without_a_modality_is_detected(client, world, outline_site, no_proposal):
    photo_id = post_photo(client, world, outline_site.id).get_json()["id"]
    body = client.get(f"/api/v1/photos/{photo_id}", headers=world.headers(client, "derm@north.test")).get_json()
    assert body["modality"] is None and body["analysis"]["modality"] == "clinical"


@pytest.mark.parametrize("value", ["xray", "", "CLINICAL"])
def test_unknown_modality_is_422(client, world, outline_site, value):
    response = post_photo(client, world, outline_site.id, modality=value)
    assert response.status_code == 422
    assert "modality" in response.get_json()["error"]["message"]
    assert db.session.execute(db.select(Photo)).first() is None


def test_photo_output_shows_regions_in_site_and_the_modality(client, world, outline_site, baseline):
    from followup.models import Analysis

    photo = Photo(site_id=outline_site.id, kind="followup", sha256="0" * 64, storage_key="0" * 64 + ".jpg",
                  content_type="image/jpeg", size_bytes=1, width=480, height=360, status="done")
    db.session.add(photo)
    db.session.flush()
    regions = [{"bbox": [1, 2, 3, 4], "area_px": 4, "growth_pct": None, "delta_e": 9.0, "distance_to_lesion_px": 0.0,
                "kind": "redness", "score": 0.7, "in_site": True, "area_mm2": 1.5},
               {"bbox": [400, 2, 420, 30], "area_px": 500, "growth_pct": None, "delta_e": 12.0,
                "distance_to_lesion_px": 250.0, "kind": "new_lesion", "score": 0.8, "in_site": False}]
    db.session.add(Analysis(photo_id=photo.id, reference_photo_id=baseline.id, comparison="baseline", registered=True,
                            regions=regions, change_score=0.8, flag=True, site_flag=True, modality="clinical"))
    db.session.commit()
    body = client.get(f"/api/v1/photos/{photo.id}", headers=world.headers(client, "derm@north.test")).get_json()
    analysis = body["analysis"]
    assert (analysis["modality"], analysis["site_flag"]) == ("clinical", True)
    assert [r["in_site"] for r in analysis["regions"]] == [True, False]
    assert analysis["regions"][0]["area_mm2"] == 1.5  # figures the schema does not name pass through
