"""The contract's API flow: token, patient, site with plan, photo upload, status, upload link, alerts."""
from datetime import date, timedelta

import pytest

from followup.db import db
from followup.models import Alert, AuditEvent, Photo, Site
from followup.records import links
from tests.conftest import jpeg_bytes


def test_token_then_patient_site_and_plan(client, world):
    headers = world.headers(client, "derm@north.test")
    response = client.post("/api/v1/patients", headers=headers,
                           json={"name": "Ada Lovelace", "phone": "+447700900123", "sms_consent": True})
    assert response.status_code == 201, response.get_json()
    patient = response.get_json()
    assert patient["id"] and patient["phone"] == "+447700900123"

    excision = date.today() - timedelta(days=10)
    response = client.post(f"/api/v1/patients/{patient['id']}/sites", headers=headers, json={
        "body_site": "left forearm", "diagnosis": "melanoma", "stage": "IIA",
        "excision_date": excision.isoformat()})
    assert response.status_code == 201, response.get_json()
    site = response.get_json()
    visits = site["plan"]["visits"]
    # NICE NG14, stage IB–IIC: every 3 months for 3 years, then every 6 months to year 5.
    assert len(visits) == 12 + 4
    assert site["plan"]["photos"], "photo requests between visits"

    response = client.get(f"/api/v1/patients/{patient['id']}", headers=headers)
    assert response.status_code == 200
    assert response.get_json()["sites"][0]["diagnosis"] == "melanoma"


def test_token_wrong_password_is_401(client, world):
    response = client.post("/api/v1/auth/token", json={"email": "derm@north.test", "password": "nope"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_photo_upload_status_and_image(client, world, site_id):
    headers = world.headers(client, "derm@north.test")
    response = client.post(f"/api/v1/sites/{site_id}/photos", headers=headers,
                           data={"file": (__import__("io").BytesIO(jpeg_bytes()), "p.jpg"), "kind": "baseline"},
                           content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert set(body) >= {"id", "status"}
    response = client.get(f"/api/v1/photos/{body['id']}", headers=headers)
    assert response.status_code == 200
    assert response.get_json()["status"] == body["status"] == "done"  # JOB_BACKEND=sync: analysed in the request
    image = client.get(f"/api/v1/photos/{body['id']}/image", headers=headers)
    assert image.status_code == 200 and image.mimetype == "image/jpeg"
    actions = {e.action for e in db.session.execute(db.select(AuditEvent)).scalars()}
    assert {"upload_photo", "read_photo", "view_photo_image"} <= actions


def test_upload_link_and_alerts_resolve(client, world, site_id):
    headers = world.headers(client, "derm@north.test")
    response = client.post(f"/api/v1/sites/{site_id}/upload-link", headers=headers)
    assert response.status_code == 200
    link = response.get_json()
    assert link["url"].startswith("https://scarwatch.test/u/") and link["expires_at"]

    for priority, score in ((2, 0.5), (1, 0.7), (1, 0.9)):  # one open alert per photo and kind
        photo = Photo(site_id=site_id, kind="followup", sha256="0" * 64, storage_key="0" * 64 + ".jpg",
                      content_type="image/jpeg", size_bytes=1, width=1, height=1, status="done")
        db.session.add(photo)
        db.session.flush()
        db.session.add(Alert(clinic_id=world.clinic.id, site_id=site_id, photo_id=photo.id, priority=priority,
                             recurrence_score=score, reasons=["new dark area"]))
    db.session.commit()

    response = client.get("/api/v1/alerts?status=open&limit=2", headers=headers)
    assert response.status_code == 200
    page = response.get_json()
    assert [(i["priority"], i["recurrence_score"]) for i in page["items"]] == [(1, 0.9), (1, 0.7)]
    assert set(page["items"][0]) >= {"id", "site_id", "patient_id", "priority", "recurrence_score", "reasons",
                                     "created_at", "status"}
    assert page["next"]
    rest = client.get(f"/api/v1/alerts?status=open&limit=2&cursor={page['next']}", headers=headers).get_json()
    assert [i["recurrence_score"] for i in rest["items"]] == [0.5] and rest["next"] is None

    first = page["items"][0]["id"]
    response = client.post(f"/api/v1/alerts/{first}/resolve", headers=headers,
                           json={"outcome": "biopsy", "note": "clinic visit booked"})
    assert response.status_code == 200
    assert response.get_json()["status"] == "resolved"
    remaining = client.get("/api/v1/alerts?status=open", headers=headers).get_json()["items"]
    assert first not in [i["id"] for i in remaining]
    assert db.session.execute(db.select(AuditEvent).where(AuditEvent.action == "resolve_alert")).scalar_one()
    again = client.post(f"/api/v1/alerts/{first}/resolve", headers=headers, json={"outcome": "biopsy"})
    assert again.status_code == 409


@pytest.mark.parametrize("body, field", [
    ({"name": "A", "phone": "07700900123", "sms_consent": True}, "phone"),
    ({"name": "A", "phone": "+1555", "sms_consent": True}, "phone"),
    ({"name": "A", "phone": 447700900123, "sms_consent": True}, "phone"),
    ({"phone": "+447700900123", "sms_consent": True}, "name"),
    ({"name": "A", "phone": "+447700900123", "sms_consent": "maybe"}, "sms_consent"),
    ({"name": "A", "phone": "+447700900123", "sms_consent": True, "date_of_birth": "2999-01-01"}, "date_of_birth"),
    ({"name": "A", "phone": "+447700900123", "sms_consent": True, "colour": "red"}, "colour"),
])
def test_bad_patient_bodies_name_the_field(client, world, body, field):
    response = client.post("/api/v1/patients", headers=world.headers(client, "derm@north.test"), json=body)
    assert response.status_code in (400, 422)
    error = response.get_json()["error"]
    assert field in error["message"] and error["code"]


@pytest.mark.parametrize("body, field", [
    ({"body_site": "back", "diagnosis": "wart", "excision_date": "2025-01-01"}, "diagnosis"),
    ({"body_site": "back", "diagnosis": "bcc", "excision_date": "2999-01-01"}, "excision_date"),
    ({"body_site": "back", "diagnosis": "bcc", "excision_date": "yesterday"}, "excision_date"),
    ({"diagnosis": "bcc", "excision_date": "2025-01-01"}, "body_site"),
    ({"body_site": 7, "diagnosis": "bcc", "excision_date": "2025-01-01"}, "body_site"),
])
def test_bad_site_bodies_name_the_field(client, world, patient_id, body, field):
    response = client.post(f"/api/v1/patients/{patient_id}/sites", headers=world.headers(client, "derm@north.test"),
                           json=body)
    assert response.status_code in (400, 422)
    assert field in response.get_json()["error"]["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'"text"'])
def test_malformed_json_is_4xx(client, world, raw):
    response = client.post("/api/v1/patients", headers={**world.headers(client, "derm@north.test"),
                                                         "Content-Type": "application/json"}, data=raw)
    assert 400 <= response.status_code < 500
    assert "error" in response.get_json()


def test_openapi_lists_every_contract_route(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    paths = set(spec["paths"])
    assert {"/api/v1/auth/token", "/api/v1/patients", "/api/v1/patients/{patient_id}",
            "/api/v1/patients/{patient_id}/sites", "/api/v1/sites/{site_id}/photos", "/api/v1/photos/{photo_id}",
            "/api/v1/sites/{site_id}/upload-link", "/api/v1/alerts", "/api/v1/alerts/{alert_id}/resolve"} <= paths
    assert "PatientCreate" in spec["components"]["schemas"]


def test_expired_token_is_refused(client, world):
    from followup.db import utcnow
    from followup.models import ApiToken

    token = world.token(client, "derm@north.test")
    row = db.session.execute(db.select(ApiToken)).scalars().first()
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    response = client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/patients/99999999999999999999", "/api/v1/photos/18446744073709551616",
                                  "/api/v1/alerts?cursor=bzo5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ=="])
def test_huge_numbers_are_4xx_not_5xx(client, world, path):
    response = client.get(path, headers=world.headers(client, "derm@north.test"))
    assert response.status_code in (400, 404)


def test_huge_dermatologist_id_is_a_field_error(client, world, patient_id):
    response = client.post(f"/api/v1/patients/{patient_id}/sites", headers=world.headers(client, "derm@north.test"),
                           json={"body_site": "back", "diagnosis": "bcc", "excision_date": "2025-01-01",
                                 "dermatologist_id": 99999999999999999999})
    assert response.status_code == 422 and "dermatologist_id" in response.get_json()["error"]["message"]


def test_api_resolve_does_what_the_outcome_asks(client, world, site_id):
    from followup.models import OutboundMessage
    from followup.records.patients import site_plan

    headers = world.headers(client, "derm@north.test")
    made = []
    for kind in ("change", "unreadable", "patient_report"):  # one open alert per site and kind
        alert = Alert(clinic_id=world.clinic.id, site_id=site_id, kind=kind, priority=2, recurrence_score=0.5,
                      reasons=["x"])
        db.session.add(alert)
        db.session.commit()
        made.append(alert.id)
    visits_before = sum(1 for i in site_plan(db.session.get(Site, site_id)).items if i.kind == "visit")
    resolve = f"/api/v1/alerts/{made[0]}/resolve"
    assert client.post(resolve, headers=headers, json={"outcome": "rephoto"}).status_code == 200
    retake = db.session.execute(db.select(OutboundMessage).where(OutboundMessage.purpose == "retake")).scalar_one()
    assert "https://scarwatch.test/u/" in links.open_links(retake.body)
    resolve = f"/api/v1/alerts/{made[1]}/resolve"
    assert client.post(resolve, headers=headers, json={"outcome": "visit"}).status_code == 200
    db.session.expire_all()
    assert sum(1 for i in site_plan(db.session.get(Site, site_id)).items if i.kind == "visit") == visits_before + 1
    other = db.session.get(Alert, made[2])
    other.status, other.claimed_by_id = "claimed", world.admin.id
    db.session.commit()
    resolve = f"/api/v1/alerts/{made[2]}/resolve"
    assert client.post(resolve, headers=headers, json={"outcome": "no_change"}).status_code == 409


def test_a_dermatologists_phone_is_stored_in_e164_so_urgent_texts_reach_them(client, world):
    from followup.models import User

    headers = world.headers(client, "admin@north.test")
    response = client.post("/api/v1/users", headers=headers, json={
        "email": "new.derm@north.test", "password": "x" * 12, "role": "dermatologist", "phone": "+44 7700 900123"})
    assert response.status_code == 201, response.get_json()
    assert db.session.get(User, response.get_json()["id"]).phone == "+447700900123"


def test_an_overlong_email_is_a_422_not_a_server_error(client, world):
    email = "a" * 300 + "@north.test"  # a 500 on PostgreSQL's 254-character column before
    headers = world.headers(client, "admin@north.test")
    response = client.post("/api/v1/users", headers=headers, json={
        "email": email, "password": "x" * 12, "role": "dermatologist"})
    assert response.status_code == 422


def test_create_user_normalises_the_phone_and_refuses_overlong_fields(app, world):
    from followup.records.accounts import AccountError, create_user

    user = create_user(world.clinic, email="  Cli@North.TEST ", password="x" * 12, role="admin",
                       phone="+44 7700-900124")
    assert (user.email, user.phone) == ("cli@north.test", "+447700900124")
    for kwargs in ({"email": "d" * 250 + "@n.test"}, {"email": "e@n.test", "name": "n" * 201},
                   {"email": "f@n.test", "phone": "07700 900125"}):
        with pytest.raises(AccountError):
            create_user(world.clinic, **{"password": "x" * 12, "role": "admin", **kwargs})
