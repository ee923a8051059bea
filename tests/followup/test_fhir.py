"""FHIR R4 at /fhir/r4: resources that parse back with fhir.resources, clinic scoping, audit, searches and
paging, $everything whose references resolve, and enrolment by a transaction Bundle."""
from __future__ import annotations

import copy
import io
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from PIL import Image
from sqlalchemy import func, select

from followup.db import db
from followup.fhir import codes
from followup.fhir.resources import HANDLERS
from followup.models import Alert, Analysis, AuditEvent, InboundMessage, OutboundMessage, Patient, Photo, Site, User
from followup.records.links import sealed_link
from followup.records.patients import OVERLAYS
from followup.storage import storage
from tests.conftest import jpeg_bytes
from tests.followup.helpers import FHIR, by_type, enrolment_bundle, everything, parse, post_bundle

NOW = datetime.now(timezone.utc)


def png_bytes(seed: int) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes(32, 24, seed=seed))).save(out, format="PNG")
    return out.getvalue()


def store_overlays(seed: int) -> dict[str, str]:
    """Overlays as processing stores them (JPEG), but the heatmap as a PNG (as older analyses kept it), and the
    stored copy of the reference photo, which is no overlay."""
    return {name: storage().put(png_bytes(seed) if name == "heatmap" else jpeg_bytes(32, 24, seed=seed),
                                ext="png" if name == "heatmap" else "jpg")
            for name in OVERLAYS + ("baseline",)}


def overlay_ids(photo_id: int) -> list[str]:
    """The Media ids of a photo's overlays, in the order they are served."""
    analysis_id = db.session.execute(select(Analysis.id).where(Analysis.photo_id == photo_id)).scalar_one()
    return [f"{photo_id}-{analysis_id}-{name}" for name in OVERLAYS]


def add_photos(site_id: int, count: int, *, start: datetime = NOW - timedelta(days=60),
               overlays: bool = False) -> list[Photo]:
    """A done baseline, then ``count - 1`` analysed follow-ups, each with its scores and one changed region
    (and, with ``overlays``, its overlay images); the last follow-up raised an alert."""
    photos = []
    for i in range(count):
        at = start + timedelta(days=i)
        photo = Photo(site_id=site_id, kind="baseline" if i == 0 else "followup", sha256=f"{i:064d}",
                      storage_key=f"photos/{site_id}-{i}.jpg", content_type="image/jpeg", size_bytes=1000 + i,
                      width=640, height=480, received_at=at, status_changed_at=at, status="done")
        db.session.add(photo)
        db.session.flush()
        if i:
            db.session.add(Analysis(
                photo_id=photo.id, reference_photo_id=photos[0].id, comparison="baseline", registered=True,
                change_score=0.1 + i / 100, recurrence_score=0.2, reasons=["New dark area beside the scar"],
                regions=[{"area_px": 120 + i, "distance_to_lesion_px": 0.0, "kind": "new_lesion"}],
                model_version="recurrence-v3", created_at=at, overlays=store_overlays(i) if overlays else {}))
        photos.append(photo)
    site = db.session.get(Site, site_id)
    db.session.add(Alert(clinic_id=site.patient.clinic_id, site_id=site_id, photo_id=photos[-1].id, kind="change",
                         priority=1, recurrence_score=0.2, reasons=["New dark area beside the scar"],
                         created_at=start))
    db.session.commit()
    return photos


TOKEN = "secret-upload-token"


def add_texts(patient_id: int) -> None:
    """A reminder with an upload link to the patient, the patient's reply, and a text to a dermatologist."""
    patient = db.session.get(Patient, patient_id)
    derm = db.session.execute(select(User).where(User.clinic_id == patient.clinic_id)).scalars().first()
    db.session.add_all([
        OutboundMessage(clinic_id=patient.clinic_id, patient_id=patient_id, idempotency_key="r1", to=patient.phone,
                        body=f"Time for a photo of your scar: {sealed_link(TOKEN)}", purpose="photo_due",
                        status="delivered", sent_at=NOW - timedelta(days=2)),
        InboundMessage(clinic_id=patient.clinic_id, patient_id=patient_id, twilio_sid="SM1", from_number=patient.phone,
                       body="Sent it, thanks", intent="text", received_at=NOW - timedelta(days=1)),
        OutboundMessage(clinic_id=patient.clinic_id, patient_id=patient_id, user_id=derm.id, idempotency_key="d1",
                        to="+447700900000", body="A priority-1 alert", purpose="alert", status="sent"),
    ])
    db.session.commit()


@pytest.fixture
def headers(client, world):
    return world.headers(client, "derm@north.test")


@pytest.fixture
def other_headers(client, world):
    return world.headers(client, "derm@south.test")


@pytest.fixture
def photos(patient_id, site_id):
    add_texts(patient_id)
    return add_photos(site_id, 3, overlays=True)


def ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def references(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for value in node.values() for r in references(value)]
    if isinstance(node, list):
        return [r for value in node for r in references(value)]
    return []


def test_metadata_lists_exactly_what_is_served(client, headers):
    statement = client.get(f"{FHIR}/metadata").get_json()
    parse(statement)
    listed = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(listed) == set(HANDLERS)
    for kind, resource in listed.items():
        params = {p["name"] for p in resource["searchParam"]} | {"_count"}
        query = "&".join(f"{p}=" + {"patient": "1", "status": "final", "_lastUpdated": "ge2020-01-01",
                                    "_count": "5"}[p] for p in sorted(params))
        response = client.get(f"{FHIR}/{kind}?{query}", headers=headers)
        assert response.status_code == 200, (kind, response.get_json())
        parse(response.get_json())
    for unlisted in ("Practitioner", "Organization", "Encounter"):
        response = client.get(f"{FHIR}/{unlisted}", headers=headers)
        assert response.status_code == 404
        assert response.get_json()["resourceType"] == "OperationOutcome"
    assert listed["Patient"]["operation"][0]["name"] == "everything"


def test_every_resource_parses_back_and_reads_alone(client, headers, patient_id, site_id, photos):
    bundle = everything(client, headers, patient_id)
    parse(bundle)
    resources = by_type(bundle)
    assert set(resources) == set(HANDLERS)
    for kind, items in resources.items():
        for resource in items:
            parse(resource)
            read = client.get(f"{FHIR}/{kind}/{resource['id']}", headers=headers)
            assert read.status_code == 200, (kind, resource["id"], read.get_json())
            assert read.get_json() == resource


def test_resources_carry_the_codes(client, headers, patient_id, site_id, photos):
    resources = by_type(everything(client, headers, patient_id))
    condition = resources["Condition"][0]
    assert condition["code"]["coding"][0] == {"system": codes.SNOMED, "code": "254701007",
                                              "display": "Basal cell carcinoma of skin"}
    assert condition["bodySite"][0]["coding"][0]["code"] == "91775009"  # left shoulder
    assert resources["Procedure"][0]["code"]["coding"][0]["code"] == codes.EXCISION[0]
    assert resources["BodyStructure"][0]["image"][0]["url"].endswith(f"/api/v1/photos/{photos[0].id}/image")
    media = {m["id"]: m for m in resources["Media"]}
    assert media[str(photos[1].id)]["content"]["url"] == f"https://scarwatch.test/api/v1/photos/{photos[1].id}/image"
    observations = {o["id"]: o for o in resources["Observation"]}
    analysis_id = db.session.execute(select(Analysis.id).where(Analysis.photo_id == photos[1].id)).scalar_one()
    change = observations[f"{analysis_id}-change"]
    assert change["code"]["coding"][0] == {"system": codes.LOCAL, "code": "change-score",
                                           "display": codes.LOCAL_CODES["change-score"]}
    assert change["valueQuantity"]["value"] == pytest.approx(0.11)
    assert {r["reference"] for r in change["derivedFrom"]} == {f"Media/{photos[1].id}", f"Media/{photos[0].id}"}
    assert "recurrence-v3" in change["device"]["display"] and "recurrence-v3" in change["method"]["text"]
    region = observations[f"{analysis_id}-region-1"]
    assert region["component"][0]["valueQuantity"] == {"value": 121, "unit": "px"}
    report = next(r for r in resources["DiagnosticReport"] if r["id"] == str(analysis_id))
    assert report["conclusion"] == "New dark area beside the scar"
    assert {r["reference"] for r in report["result"]} == {f"Observation/{analysis_id}-{s}"
                                                          for s in ("change", "recurrence", "region-1")}
    task = resources["Task"][0]
    assert (task["status"], task["priority"], task["businessStatus"]["coding"][0]["code"]) == (
        "requested", "stat", "alert-open")
    provenance = next(p for p in resources["Provenance"] if p["id"] == str(analysis_id))
    assert {r["reference"] for r in provenance["target"]} == {f"DiagnosticReport/{analysis_id}"} | {
        r["reference"] for r in report["result"]} | {f"Media/{m}" for m in overlay_ids(photos[1].id)}
    assert "recurrence-v3" in provenance["agent"][0]["who"]["display"]
    texts = resources["Communication"]
    assert [(t["status"], "recipient" in t, "sender" in t) for t in texts] == [("completed", True, False),
                                                                              ("completed", False, True)]
    assert TOKEN not in str(texts) and "Time for a photo of your scar: https://scarwatch.test/u/" in str(texts)
    assert "priority-1" not in str(texts)  # a text to staff is not the patient's record
    plan = resources["CarePlan"][0]
    assert plan["addresses"] == [{"reference": f"Condition/{site_id}"}]
    assert {a["detail"]["code"]["coding"][0]["code"] for a in plan["activity"]} == {"visit", "photo"}


def test_overlays_are_media_of_the_analysis_report(client, headers, patient_id, site_id, photos):
    resources = by_type(everything(client, headers, patient_id))
    media = {m["id"]: m for m in resources["Media"]}
    analysis = db.session.execute(select(Analysis).where(Analysis.photo_id == photos[1].id)).scalar_one()
    expected = overlay_ids(photos[1].id)
    assert expected == [f"{photos[1].id}-{analysis.id}-{name}"
                        for name in ("aligned", "outline", "heatmap", "saliency")]
    # Each photo, then its analysis' overlays (the stored copy of the reference photo is that photo, no overlay).
    assert list(media) == [str(photos[0].id), str(photos[1].id), *expected, str(photos[2].id),
                           *overlay_ids(photos[2].id)]
    for media_id, name in zip(expected, OVERLAYS):
        overlay = media[media_id]
        parse(overlay)
        assert overlay["content"]["url"] == f"https://scarwatch.test/api/v1/analyses/{analysis.id}/overlays/{name}"
        assert overlay["content"]["contentType"] == ("image/png" if name == "heatmap" else "image/jpeg")
        assert overlay["partOf"] == [{"reference": f"DiagnosticReport/{analysis.id}"}]
        assert overlay["subject"] == {"reference": f"Patient/{patient_id}"}
        assert overlay["bodySite"] == media[str(photos[1].id)]["bodySite"]
        assert overlay["status"] == "completed" and overlay["type"]["coding"][0]["code"] == "image"
        note = overlay["note"][0]["text"]
        assert f"Media/{photos[1].id}" in note and f"Media/{photos[0].id}" in note
    report = next(r for r in resources["DiagnosticReport"] if r["id"] == str(analysis.id))
    assert [m["link"]["reference"] for m in report["media"]] == [
        f"Media/{photos[1].id}", f"Media/{photos[0].id}", *(f"Media/{m}" for m in expected)]
    provenance = next(p for p in resources["Provenance"] if p["id"] == str(analysis.id))
    assert {f"Media/{m}" for m in expected} <= {t["reference"] for t in provenance["target"]}
    assert {e["what"]["reference"] for e in provenance["entity"]} == {f"Media/{photos[1].id}", f"Media/{photos[0].id}"}


def test_an_overlays_content_url_serves_the_image_with_the_token_and_is_audited(client, headers, other_headers,
                                                                              world, patient_id, photos):
    analysis = db.session.execute(select(Analysis).where(Analysis.photo_id == photos[1].id)).scalar_one()
    for media_id, name in zip(overlay_ids(photos[1].id), OVERLAYS):
        url = client.get(f"{FHIR}/Media/{media_id}", headers=headers).get_json()["content"]["url"]
        path = url.removeprefix("https://scarwatch.test")
        response = client.get(path, headers=headers)
        assert response.status_code == 200, name
        assert response.data == storage().get(analysis.overlays[name])
        assert response.mimetype == ("image/png" if name == "heatmap" else "image/jpeg")
        Image.open(io.BytesIO(response.data)).verify()
        assert response.headers["Cache-Control"] == "private, no-store"
        assert client.get(path).status_code == 401
        assert client.get(path, headers=other_headers).status_code == 404
    views = _audited("view_overlay")
    assert [(e.user_id, e.record_id, e.detail["overlay"], patients) for e, patients in views] == [
        (world.derm.id, analysis.id, name, [patient_id]) for name in OVERLAYS]
    for path in (f"/api/v1/analyses/{analysis.id}/overlays/baseline", f"/api/v1/analyses/{analysis.id}/overlays/x",
                 "/api/v1/analyses/99999999999999999999/overlays/heatmap", "/api/v1/analyses/0/overlays/heatmap"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"]
    assert len(_audited("view_overlay")) == len(OVERLAYS)


def test_the_overlay_route_is_in_the_openapi_document(client):
    operation = client.get("/api/v1/openapi.json").get_json()["paths"][
        "/api/v1/analyses/{analysis_id}/overlays/{name}"]["get"]
    assert {"image/jpeg", "image/png"} <= set(operation["responses"]["200"]["content"])


@pytest.mark.parametrize("bad", ["{p}-{a}-baseline", "{p}-{a}-nope", "{p}-{a}-HEATMAP", "{p}-{a}", "{p}-",
                                 "{p}-{other}-heatmap", "{p}-99999999999-heatmap", "99999999999-{a}-heatmap",
                                 "{p}-{a}-heatmap-1", "{p}-{a}-" + "x" * 60, "0-{a}-heatmap", "{p}.{a}.heatmap"])
def test_a_malformed_or_unknown_overlay_id_is_404(client, headers, photos, bad):
    analysis_id = int(overlay_ids(photos[1].id)[0].split("-")[1])
    other = int(overlay_ids(photos[2].id)[0].split("-")[1])
    media_id = bad.format(p=photos[1].id, a=analysis_id, other=other)
    response = client.get(f"{FHIR}/Media/{media_id}", headers=headers)
    assert response.status_code == 404, response.get_json()
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_media_search_pages_through_photos_and_overlays(client, headers, patient_id, photos):
    expected = [str(photos[0].id), str(photos[1].id), *overlay_ids(photos[1].id), str(photos[2].id),
                *overlay_ids(photos[2].id)]
    seen, url, pages = [], f"{FHIR}/Media?patient={patient_id}&_count=3", 0
    while url:
        page = client.get(url.removeprefix("https://scarwatch.test"), headers=headers).get_json()
        parse(page)
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        pages += 1
    assert seen == expected and pages == 4
    assert ids(client.get(f"{FHIR}/Media?patient={patient_id}&status=not-done", headers=headers).get_json()) == []


def test_a_resolved_alert_is_a_completed_task_with_owner_and_outcome(client, headers, world, site_id, photos):
    alert = db.session.execute(select(Alert)).scalar_one()
    client.post(f"/api/v1/alerts/{alert.id}/claim", headers=headers)
    assert client.post(f"/api/v1/alerts/{alert.id}/resolve", headers=headers,
                       json={"outcome": "biopsy"}).status_code == 200
    task = client.get(f"{FHIR}/Task/{alert.id}", headers=headers).get_json()
    parse(task)
    assert task["status"] == "completed"
    assert task["businessStatus"]["coding"][0]["code"] == "alert-resolved"
    assert task["owner"] == {"display": world.derm.name or world.derm.email}
    assert task["output"][0]["valueCodeableConcept"]["coding"][0]["code"] == "biopsy"
    assert client.get(f"{FHIR}/Task?status=completed", headers=headers).get_json()["entry"][0]["resource"] == task
    assert ids(client.get(f"{FHIR}/Task?status=requested", headers=headers).get_json()) == []


def test_everything_references_resolve_with_twenty_photos(client, headers, patient_id, site_id):
    add_photos(site_id, 20, overlays=True)
    client.get(f"{FHIR}/Patient/{patient_id}/$everything", headers=headers)  # warm-up (first request builds caches)
    started = time.perf_counter()
    bundle = everything(client, headers, patient_id)
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"\n$everything, 20 photos: {len(bundle['entry'])} resources in {elapsed_ms:.0f} ms (server, test client)")
    present = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    assert {e["fullUrl"].removeprefix("https://scarwatch.test/fhir/r4/") for e in bundle["entry"]} == present
    refs = references([e["resource"] for e in bundle["entry"]])
    assert refs and set(refs) <= present, set(refs) - present
    assert len(by_type(bundle)["Media"]) == 20 + 19 * len(OVERLAYS)  # the photos and the overlays of 19 analyses


def test_another_clinics_resources_are_404(client, headers, other_headers, world, patient_id, site_id, photos):
    bundle = everything(client, headers, patient_id)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        response = client.get(f"{FHIR}/{resource['resourceType']}/{resource['id']}", headers=other_headers)
        assert response.status_code == 404, resource["resourceType"]
        assert response.get_json()["resourceType"] == "OperationOutcome"
    assert client.get(f"{FHIR}/Patient/{patient_id}/$everything", headers=other_headers).status_code == 404
    # A text filed in another clinic's inbox is not part of the patient's record.
    db.session.add(InboundMessage(clinic_id=world.other_clinic.id, patient_id=patient_id, twilio_sid="SM2",
                                  from_number="+447700900456", body="wrong inbox", intent="text"))
    db.session.commit()
    assert "wrong inbox" not in str(everything(client, headers, patient_id))
    for kind in HANDLERS:
        query = "" if kind == "Patient" else f"?patient={patient_id}"
        assert ids(client.get(f"{FHIR}/{kind}{query}", headers=other_headers).get_json()) == [], kind


def test_without_a_token_is_401_operation_outcome(client, patient_id):
    for path in (f"{FHIR}/Patient/{patient_id}", f"{FHIR}/Patient", f"{FHIR}/Patient/{patient_id}/$everything"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.get_json()["issue"][0]["code"] == "login"
    assert client.post(FHIR, json={"resourceType": "Bundle"}).status_code == 401


def _audited(action: str) -> list[tuple[AuditEvent, list[int]]]:
    events = db.session.execute(select(AuditEvent).where(AuditEvent.action == action)).scalars().all()
    return [(e, [s.patient_id for s in e.subjects]) for e in events]


def test_reads_searches_and_everything_are_audited_with_the_patients(client, headers, world, patient_id, site_id,
                                                                     photos):
    client.get(f"{FHIR}/Media/{photos[1].id}", headers=headers)
    client.get(f"{FHIR}/Observation?patient={patient_id}", headers=headers)
    client.get(f"{FHIR}/Patient/{patient_id}/$everything", headers=headers)
    for action in ("fhir_read", "fhir_search", "fhir_everything"):
        [(event, patients)] = _audited(action)
        assert event.user_id == world.derm.id and patients == [patient_id], action
    assert _audited("fhir_read")[0][0].detail["resource"] == f"Media/{photos[1].id}"


def test_search_by_patient_status_and_last_updated(client, headers, world, patient_id, site_id, photos):
    from followup.records.patients import create_patient

    other = create_patient(world.clinic, name="Ada", phone="+447700900999")
    db.session.commit()
    patients = client.get(f"{FHIR}/Patient", headers=headers).get_json()
    assert {e["resource"]["id"] for e in patients["entry"]} == {str(patient_id), str(other.id)}
    media = client.get(f"{FHIR}/Media?patient={patient_id}&status=completed", headers=headers).get_json()
    assert len(media["entry"]) == 3 + 2 * len(OVERLAYS)  # the photos and the overlays of their two analyses
    assert ids(client.get(f"{FHIR}/Media?patient={other.id}", headers=headers).get_json()) == []
    # An overlay is searched with its photo (same status, same lastUpdated).
    day = (NOW - timedelta(days=59)).date().isoformat()  # photos[1] was received 59 days ago
    later = client.get(f"{FHIR}/Media?_lastUpdated=ge{day}", headers=headers).get_json()
    assert [e["resource"]["id"] for e in later["entry"]] == [
        str(photos[1].id), *overlay_ids(photos[1].id), str(photos[2].id), *overlay_ids(photos[2].id)]
    earlier = client.get(f"{FHIR}/Media?_lastUpdated=le{day}&_lastUpdated=gt2000-01-01", headers=headers).get_json()
    assert [e["resource"]["id"] for e in earlier["entry"]] == [str(photos[0].id), str(photos[1].id),
                                                               *overlay_ids(photos[1].id)]
    for bad in ("_lastUpdated=ge2026-13-01", "_lastUpdated=ge2026-01-01T10:00:00", "_count=0", "patient=x",
                "color=red", "_cursor=abc"):
        response = client.get(f"{FHIR}/Media?{bad}", headers=headers)
        assert response.status_code == 400, bad
        assert response.get_json()["issue"][0]["expression"] == [bad.split("=")[0]]


def test_search_pages_with_next_links(client, headers, patient_id, site_id):
    add_photos(site_id, 6)  # 5 analyses, each 3 Observations
    expected = [r["id"] for r in by_type(everything(client, headers, patient_id))["Observation"]]
    seen, url, pages = [], f"{FHIR}/Observation?patient={patient_id}&_count=4", 0
    while url:
        page = client.get(url.removeprefix("https://scarwatch.test"), headers=headers).get_json()
        parse(page)
        assert page["type"] == "searchset" and len(page.get("entry", [])) <= 4
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        pages += 1
    assert seen == expected and len(seen) == 15 and pages == 4


# Enrolment.

def counts() -> tuple[int, int]:
    return (db.session.execute(select(func.count()).select_from(Patient)).scalar_one(),
            db.session.execute(select(func.count()).select_from(Site)).scalar_one())


@pytest.mark.parametrize("procedure", [True, False])
def test_enrolment_round_trips_through_everything(client, headers, world, procedure):
    bundle = enrolment_bundle(procedure=procedure)
    response = post_bundle(client, headers, bundle)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    parse(answer)
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * len(bundle["entry"])
    patient_id = int(answer["entry"][0]["response"]["location"].split("/")[1])
    resources = by_type(everything(client, headers, patient_id))
    patient, condition = resources["Patient"][0], resources["Condition"][0]
    sent_patient = bundle["entry"][0]["resource"]
    assert patient["identifier"] == sent_patient["identifier"]
    assert patient["name"][0]["text"] == "Ada Lovelace" and patient["birthDate"] == sent_patient["birthDate"]
    assert patient["telecom"][0]["value"] == "+447700900123"
    assert condition["code"]["coding"][0]["code"] == "372244006"
    assert condition["bodySite"][0]["coding"][0]["code"] == "66480008"
    assert condition["bodySite"][0]["text"] == "left forearm"
    assert condition["stage"][0]["summary"]["text"] == "IIA"
    excised = (date.today() - timedelta(days=40)).isoformat()
    assert condition["abatementDateTime"] == excised
    assert resources["Procedure"][0]["performedDateTime"] == excised
    assert resources["CarePlan"][0]["title"] == "Follow-up after excision (melanoma-IB-IV)"
    assert _audited("fhir_enrol")[0][1] == [patient_id]
    site = db.session.get(Site, int(condition["id"]))
    assert site.dermatologist_id == world.derm.id and site.patient.sms_consent is False


def test_the_same_bundle_twice_creates_nothing_new(client, headers):
    assert post_bundle(client, headers, enrolment_bundle()).status_code == 200
    before = counts()
    again = post_bundle(client, headers, enrolment_bundle())
    assert again.status_code == 200
    assert [e["response"]["status"] for e in again.get_json()["entry"]] == ["200 OK"] * 3
    assert counts() == before == (1, 1)
    # Another identifier is another patient; the same one in another clinic is that clinic's own patient.
    assert post_bundle(client, headers, enrolment_bundle(identifier="MRN-2")).status_code == 200
    assert counts() == (2, 2)


def test_the_same_identifier_in_another_clinic_is_its_own_patient(client, headers, other_headers):
    first = post_bundle(client, headers, enrolment_bundle()).get_json()["entry"][0]["response"]["location"]
    second = post_bundle(client, other_headers, enrolment_bundle()).get_json()["entry"][0]["response"]["location"]
    assert first != second and counts() == (2, 2)


def _bad(mutate):
    bundle = enrolment_bundle()
    mutate(bundle)
    return bundle


def _resource(bundle, i):
    return bundle["entry"][i]["resource"]


BAD_BUNDLES = {
    "unknown body-site code": (
        lambda b: _resource(b, 1)["bodySite"][0]["coding"][0].update(code="999999999"),
        422, "Bundle.entry[1].resource.bodySite[0].coding[0].code"),
    "patient without identifier": (
        lambda b: _resource(b, 0).pop("identifier"), 422, "Bundle.entry[0].resource.identifier"),
    "unsupported diagnosis": (  # psoriasis
        lambda b: _resource(b, 1)["code"]["coding"][0].update(code="9014002"),
        422, "Bundle.entry[1].resource.code.coding[0].code"),
    "diagnosis in another code system": (
        lambda b: _resource(b, 1).update(
            code={"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C43.6"}]}),
        422, "Bundle.entry[1].resource.code"),
    "condition subject does not resolve": (
        lambda b: _resource(b, 1)["subject"].update(reference="urn:uuid:nobody"),
        422, "Bundle.entry[1].resource.subject.reference"),
    "procedure reason does not resolve": (
        lambda b: _resource(b, 2)["reasonReference"][0].update(reference="Condition/1"),
        422, "Bundle.entry[2].resource.reasonReference[0].reference"),
    "too many entries": (
        lambda b: b["entry"].extend(copy.deepcopy(b["entry"][1]) for _ in range(30)), 413, "Bundle.entry"),
    "too many bytes": (
        lambda b: _resource(b, 0)["name"][0].update(text="x" * 300_000), 413, "Bundle"),
    "phone not E.164": (
        lambda b: _resource(b, 0)["telecom"][1].update(value="07700 900123"), 422,
        "Bundle.entry[0].resource.telecom[1].value"),
    "excision in the future": (
        lambda b: _resource(b, 2).update(performedDateTime="2999-01-01"), 422,
        "Bundle.entry[2].resource.performedDateTime"),
    "invalid FHIR": (
        lambda b: _resource(b, 0).update(birthDate="10/12/1960"), 400, "Bundle.entry[0].resource.birthDate"),
    "not a transaction": (lambda b: b.update(type="batch"), 400, "Bundle.type"),
    "an observation": (
        lambda b: b["entry"].append({"fullUrl": "urn:uuid:o", "request": {"method": "POST", "url": "Observation"},
                                     "resource": {"resourceType": "Observation", "status": "final",
                                                  "code": {"text": "x"}}}),
        422, "Bundle.entry[3].resource"),
    "a resource type FHIR does not have": (
        lambda b: b["entry"].append({"fullUrl": "urn:uuid:f", "request": {"method": "POST", "url": "Foo"},
                                     "resource": {"resourceType": "Foo"}}),
        422, "Bundle.entry[3].resource"),
}


@pytest.mark.parametrize("case", list(BAD_BUNDLES))
def test_a_bad_bundle_is_an_operation_outcome_and_creates_nothing(client, headers, case):
    mutate, status, expression = BAD_BUNDLES[case]
    response = post_bundle(client, headers, _bad(mutate))
    assert response.status_code == status, response.get_json()
    outcome = response.get_json()
    parse(outcome)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [expression]
    assert counts() == (0, 0)


@pytest.mark.parametrize("body", [b"{not json", b"[" * 100_000 + b"]" * 100_000], ids=["broken", "deep"])
def test_a_body_that_is_not_json_is_a_400_operation_outcome(client, headers, body):
    response = client.post(FHIR, data=body, headers={**headers, "Content-Type": "application/fhir+json"})
    assert response.status_code == 400 and response.get_json()["issue"][0]["expression"] == ["Bundle"]
