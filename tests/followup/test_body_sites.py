"""The one body-site table (followup/records/body_sites.py), for FHIR and DICOM alike: every SNOMED CT code in it
enrols by FHIR, comes back out of $everything and goes into the DICOM file of the site's photo."""
from __future__ import annotations

import io

import pydicom
import pytest

from followup.db import db
from followup.fhir import codes
from followup.intake.photos import receive_photo
from followup.models import Site
from followup.records.body_sites import LATERALITY, REGIONS, SITE_OF_CODE, read_body_site
from tests.conftest import jpeg_bytes
from tests.followup.helpers import FHIR, by_type, enrolment_bundle, everything, parse, post_bundle

# Codes senders use for a region besides the one the table writes: read as that region, served as its code.
ALSO = {code: region.code for region in REGIONS.values() for code in region.also}


def test_every_code_of_the_table_names_words_that_read_back_to_it():
    assert "51185008" in ALSO  # chest, as records often code it
    for code, text in SITE_OF_CODE.items():
        site = read_body_site(text)
        assert site.concept[0] == ALSO.get(code, code), (code, text)
    # Every region, and each side's concept, is there to enrol.
    for region in REGIONS.values():
        assert {region.code, *region.also} | {c[0] for c in (region.left, region.right) if c} <= set(SITE_OF_CODE)


@pytest.mark.parametrize("text, concept", [
    ("left forearm", "66480008"), ("Left  Forearm", "66480008"), ("forearm", "14975008"),
    ("back of right hand", "789219001"), ("dorsum of left hand", "789218009"), ("left hand", "85562004"),
    ("chest", "816094009"), ("left chest", "816094009"), ("upper back", "77568009"), ("lower back", "52612000"),
    ("left and right cheek", "60819002"), ("behind the tattoo", None),
])
def test_a_site_is_coded_with_its_sides_concept_where_the_table_has_one(text, concept):
    site = read_body_site(text)
    assert (site.concept[0] if site.concept else None) == concept
    coded = codes.body_site(text)
    assert coded["text"] == text
    assert [c["code"] for c in coded.get("coding", [])] == ([concept] if concept else [])


@pytest.fixture
def headers(client, world):
    return world.headers(client, "derm@north.test")


@pytest.mark.parametrize("code", sorted(SITE_OF_CODE))
def test_a_code_enrols_and_comes_back_in_everything_and_in_the_dicom_file(client, headers, code):
    bundle = enrolment_bundle()
    bundle["entry"][1]["resource"]["bodySite"] = [{"coding": [{"system": codes.SNOMED, "code": code}]}]
    response = post_bundle(client, headers, bundle)
    assert response.status_code == 200, response.get_json()
    condition_id = int(response.get_json()["entry"][1]["response"]["location"].split("/")[1])
    site = db.session.get(Site, condition_id)
    assert site.body_site == SITE_OF_CODE[code]
    expected = ALSO.get(code, code)
    resources = by_type(everything(client, headers, site.patient_id))
    for kind, element in (("Condition", "bodySite"), ("Procedure", "bodySite"), ("BodyStructure", "location")):
        [resource] = resources[kind]
        parse(resource)
        concept = resource[element][0] if element == "bodySite" else resource[element]
        assert (concept["coding"][0]["code"], concept["text"]) == (expected, SITE_OF_CODE[code]), kind
    photo = receive_photo(site, jpeg_bytes(seed=1), kind="baseline", enqueue=False)
    db.session.commit()
    dicom = client.get(f"/api/v1/photos/{photo.id}/dicom", headers=headers)
    assert dicom.status_code == 200
    ds = pydicom.dcmread(io.BytesIO(dicom.data))
    read = read_body_site(SITE_OF_CODE[code])
    [region] = ds.AnatomicRegionSequence
    assert (region.CodeValue, region.CodingSchemeDesignator) == (read.region.code, "SCT")
    modifiers = [m.CodeValue for m in region.get("AnatomicRegionModifierSequence", [])]
    assert modifiers == ([LATERALITY[read.laterality][0]] if read.laterality else [])
    assert ds.get("Laterality", "") == (read.laterality or "")
    # The Media of the photo carries the same code.
    media = client.get(f"{FHIR}/Media/{photo.id}", headers=headers).get_json()
    assert media["bodySite"]["coding"][0]["code"] == expected


def test_chest_coded_as_thoracic_structure_enrols(client, headers):
    """51185008 (Thoracic structure), the code many records send for the chest, was refused once the table
    wrote DICOM's 816094009: it enrols as the chest."""
    bundle = enrolment_bundle()
    bundle["entry"][1]["resource"]["bodySite"] = [{"coding": [{"system": codes.SNOMED, "code": "51185008"}]}]
    response = post_bundle(client, headers, bundle)
    assert response.status_code == 200, response.get_json()
    patient_id = int(response.get_json()["entry"][0]["response"]["location"].split("/")[1])
    [condition] = by_type(everything(client, headers, patient_id))["Condition"]
    assert condition["bodySite"][0]["text"] == "chest"
    assert condition["bodySite"][0]["coding"][0] == {"system": codes.SNOMED, "code": "816094009", "display": "Chest"}
    # Sent again (either code), it is the same site.
    assert [e["response"]["status"] for e in post_bundle(client, headers, bundle).get_json()["entry"]] == ["200 OK"] * 3
    bundle["entry"][1]["resource"]["bodySite"][0]["coding"][0]["code"] = "816094009"
    assert [e["response"]["status"] for e in post_bundle(client, headers, bundle).get_json()["entry"]] == ["200 OK"] * 3
