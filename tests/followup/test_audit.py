"""The audit trail: what is recorded (every list with the patients it showed, claims, sign-ins, tokens), and the
admins' page and API that answer "who saw patient X" and "what did user Y do", with a CSV export."""
from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from followup.db import MAX_ID, db, utcnow
from followup.intake.photos import receive_photo
from followup.models import Alert, AuditEvent, InboundMessage, OutboundMessage, PlanItem, Site
from followup.records.accounts import create_user
from followup.records.patients import create_patient, create_site, site_plan
from tests.conftest import PASSWORD, jpeg_bytes
from tests.followup.helpers import login


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)).scalars())


def subjects(event: AuditEvent) -> set[int]:
    return {s.patient_id for s in event.subjects}


def bearer(world, client, email: str) -> dict:
    return world.headers(client, email)


@pytest.fixture
def clinic_data(world, site_id):
    """Two patients of the North clinic shown by every list (alert, text out, text in, overdue photo), and a
    patient of the South clinic."""
    grace = db.session.get(Site, site_id).patient
    ada = create_patient(world.clinic, name="Ada Lovelace", phone="+447700900111", sms_consent=True)
    south = create_patient(world.other_clinic, name="Sam South", phone="+447700900222", sms_consent=True)
    db.session.flush()
    for n, patient in enumerate((grace, ada)):
        site = patient.sites[0] if patient.sites else create_site(
            patient, body_site="scalp", diagnosis="melanoma", excision_date=date.today() - timedelta(days=90))
        db.session.add(Alert(clinic_id=world.clinic.id, site_id=site.id, priority=2, recurrence_score=0.5,
                             reasons=["new dark area"]))
        db.session.add(OutboundMessage(clinic_id=world.clinic.id, patient_id=patient.id, idempotency_key=f"k{n}",
                                       to=patient.phone, body="Time for a photo", purpose="photo_due"))
        db.session.add(InboundMessage(clinic_id=world.clinic.id, patient_id=patient.id, twilio_sid=f"SM{n}",
                                      from_number=patient.phone, body="It itches", intent="text"))
        db.session.add(PlanItem(plan_id=site_plan(site).id, kind="photo", due_date=date.today() - timedelta(days=3)))
    db.session.commit()
    return {"grace": grace.id, "ada": ada.id, "south": south.id}


# What is recorded.

def test_api_alert_list_is_audited_with_the_patients_it_showed(client, world, clinic_data):
    response = client.get("/api/v1/alerts", headers=bearer(world, client, "derm@north.test"))
    assert response.status_code == 200 and len(response.get_json()["items"]) == 2
    [event] = events("list_alerts")
    assert event.user_id == world.derm.id and event.detail["count"] == 2
    assert subjects(event) == {clinic_data["grace"], clinic_data["ada"]}


@pytest.mark.parametrize("path, action", [
    ("/queue", "view_queue"), ("/queue/rows", "view_queue"), ("/patients", "list_patients"),
    ("/messages", "view_messages"), ("/inbox", "view_inbox"), ("/overdue", "view_overdue"),
])
def test_web_lists_record_the_patients_they_showed(client, world, clinic_data, path, action):
    login(client)
    assert client.get(path).status_code == 200
    [event] = events(action)
    assert event.user_id == world.derm.id
    assert subjects(event) == {clinic_data["grace"], clinic_data["ada"]}


def test_single_records_name_their_patient(client, world, site_id, patient_id):
    photo = receive_photo(db.session.get(Site, site_id), jpeg_bytes(), kind="baseline", enqueue=False)
    db.session.commit()
    headers = bearer(world, client, "derm@north.test")
    for path in (f"/api/v1/patients/{patient_id}", f"/api/v1/sites/{site_id}", f"/api/v1/photos/{photo.id}",
                 f"/api/v1/photos/{photo.id}/image"):
        assert client.get(path, headers=headers).status_code == 200
    for action in ("read_patient", "read_site", "read_photo", "view_photo_image"):
        assert [subjects(e) for e in events(action)] == [{patient_id}]


def test_api_claim_is_audited(client, world, clinic_data):
    alert = db.session.execute(select(Alert).order_by(Alert.id)).scalars().first()
    response = client.post(f"/api/v1/alerts/{alert.id}/claim", headers=bearer(world, client, "derm@north.test"))
    assert response.status_code == 200
    [event] = events("claim_alert")
    assert (event.user_id, event.record_type, event.record_id) == (world.derm.id, "alert", alert.id)
    assert subjects(event) == {clinic_data["grace"]}


def test_api_tokens_and_refused_api_sign_ins_are_audited(client, world):
    bearer(world, client, "derm@north.test")
    [issued] = events("issue_token")
    assert issued.user_id == world.derm.id and issued.record_type == "api_token" and issued.record_id
    for email in ("derm@north.test", "nobody@north.test"):
        response = client.post("/api/v1/auth/token", json={"email": email, "password": "wrong-password-123"})
        assert response.status_code == 401
    known, unknown = events("sign_in_failed")
    assert (known.user_id, known.actor, known.detail) == (world.derm.id, "anonymous",
                                                          {"via": "api", "email": "derm@north.test"})
    assert known.ip == "127.0.0.1"
    assert (unknown.user_id, unknown.detail) == (None, {"via": "api", "account": "unknown"})  # nothing typed


def test_refused_web_sign_in_is_audited(client, world):
    response = client.post("/login", data={"email": "Derm@North.test", "password": "wrong-password-123"})
    assert response.status_code == 401
    [event] = events("sign_in_failed")
    assert (event.user_id, event.actor, event.detail) == (world.derm.id, "anonymous",
                                                          {"via": "web", "email": "derm@north.test"})
    # A password typed into the e-mail box names no account: it must not stay in the trail.
    client.post("/login", data={"email": "Hunter2-my-password", "password": "wrong-password-123"})
    assert events("sign_in_failed")[1].detail == {"via": "web", "account": "unknown"}


# Reading the trail.

def _trail(client, headers, **query):
    response = client.get("/api/v1/audit", headers=headers, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_admin_sees_who_saw_a_patient_and_what_a_user_did(client, world, clinic_data):
    derm = bearer(world, client, "derm@north.test")
    client.get("/api/v1/alerts", headers=derm)
    client.get(f"/api/v1/patients/{clinic_data['ada']}", headers=derm)
    client.post("/api/v1/auth/token", json={"email": "derm@north.test", "password": "wrong-password-123"})
    admin = bearer(world, client, "admin@north.test")

    grace = _trail(client, admin, patient_id=clinic_data["grace"])
    assert [(e["action"], e["user_email"]) for e in grace["items"]] == [("list_alerts", "derm@north.test")]
    assert clinic_data["grace"] in grace["items"][0]["patient_ids"] and grace["next"] is None
    ada = [e["action"] for e in _trail(client, admin, patient_id=clinic_data["ada"])["items"]]
    assert ada == ["read_patient", "list_alerts"]  # newest first

    by_derm = [e["action"] for e in _trail(client, admin, user_id=world.derm.id)["items"]]
    assert by_derm == ["sign_in_failed", "read_patient", "list_alerts", "issue_token"]
    both = _trail(client, admin, user_id=world.derm.id, patient_id=clinic_data["ada"])["items"]
    assert [e["action"] for e in both] == ["read_patient", "list_alerts"]

    later = (utcnow() + timedelta(minutes=1)).isoformat()
    assert _trail(client, admin, user_id=world.derm.id, since=later)["items"] == []
    assert len(_trail(client, admin, user_id=world.derm.id, until=later)["items"]) == 4
    assert _trail(client, admin, user_id=world.derm.id, until="2000-01-01T00:00:00")["items"] == []

    # Reading the trail is itself in it.
    reads = [e for e in _trail(client, admin, user_id=world.admin.id)["items"] if e["action"] == "view_audit"]
    assert reads and reads[-1]["detail"] == {"patient_id": clinic_data["grace"]}


def test_trail_pages_on_with_a_cursor(client, world, clinic_data):
    derm = bearer(world, client, "derm@north.test")
    for _ in range(3):
        client.get(f"/api/v1/patients/{clinic_data['grace']}", headers=derm)
    admin = bearer(world, client, "admin@north.test")
    first = _trail(client, admin, patient_id=clinic_data["grace"], limit=2)
    second = _trail(client, admin, patient_id=clinic_data["grace"], limit=2, cursor=first["next"])
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True) and second["next"] is None
    bad = client.get("/api/v1/audit", headers=admin, query_string={"cursor": "bm90LWEtY3Vyc29y"})
    assert bad.status_code == 400


def test_trail_is_for_admins_of_the_clinic_only(client, world, clinic_data):
    other_admin = create_user(world.other_clinic, email="admin@south.test", password=PASSWORD, role="admin")
    db.session.commit()
    derm = bearer(world, client, "derm@north.test")
    assert client.get("/api/v1/audit", headers=derm).status_code == 403
    assert client.get("/api/v1/audit/export", headers=derm).status_code == 403
    client.get("/api/v1/alerts", headers=derm)
    client.get("/api/v1/alerts", headers=bearer(world, client, "derm@south.test"))
    admin = bearer(world, client, "admin@north.test")
    for query in ({"patient_id": clinic_data["south"]}, {"user_id": world.other_derm.id}, {"user_id": other_admin.id},
                  {"patient_id": MAX_ID}):
        assert client.get("/api/v1/audit", headers=admin, query_string=query).status_code == 404
        assert client.get("/api/v1/audit/export", headers=admin, query_string=query).status_code == 404
    everyone = _trail(client, admin)["items"]
    assert {e["user_id"] for e in everyone} == {world.derm.id, world.admin.id}
    for query in ({"since": "yesterday"}, {"until": "0001-01-01T00:00:00+05:00"}, {"patient_id": 0},
                  {"user_id": MAX_ID + 1}):
        assert client.get("/api/v1/audit", headers=admin, query_string=query).status_code == 422


def test_trail_exports_as_csv_that_a_spreadsheet_cannot_run(client, world, clinic_data):
    create_user(world.clinic, email="=2+5@north.test", password=PASSWORD, role="dermatologist")
    db.session.commit()
    client.get("/api/v1/alerts", headers=bearer(world, client, "=2+5@north.test"))
    admin = bearer(world, client, "admin@north.test")
    response = client.get("/api/v1/audit/export", headers=admin, query_string={"patient_id": clinic_data["grace"]})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Cache-Control"] == "private, no-store"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["action"], r["user_email"]) for r in rows] == [("list_alerts", "'=2+5@north.test")]
    assert set(rows[0]["patient_ids"].split()) == {str(clinic_data["grace"]), str(clinic_data["ada"])}
    assert events("export_audit")[-1].detail == {"patient_id": clinic_data["grace"]}


def test_csv_export_reads_a_long_trail_in_batches(client, world, patient_id, monkeypatch):
    monkeypatch.setattr("followup.audit._CSV_BATCH", 2)
    derm = bearer(world, client, "derm@north.test")
    for _ in range(5):
        client.get(f"/api/v1/patients/{patient_id}", headers=derm)
    response = client.get("/api/v1/audit/export", headers=bearer(world, client, "admin@north.test"),
                          query_string={"patient_id": patient_id})
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 5 and len({r["id"] for r in rows}) == 5


def test_audit_page_is_for_admins_and_finds_a_patients_readers(client, world, clinic_data):
    login(client)
    client.get(f"/patients/{clinic_data['ada']}")
    assert client.get("/audit").status_code == 403
    assert client.get("/audit.csv").status_code == 403
    client.post("/logout")
    login(client, "admin@north.test")
    patient_page = client.get(f"/patients/{clinic_data['ada']}").get_data(as_text=True)
    assert f"/audit?patient_id={clinic_data['ada']}" in patient_page
    page = client.get(f"/audit?patient_id={clinic_data['ada']}&user_id={world.derm.id}&since=2020-01-01T00:00&until=")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "view_patient" in text and "derm@north.test" in text
    assert f'/audit.csv?patient_id={clinic_data["ada"]}' in text
    bad = client.get("/audit?since=tomorrow&patient_id=99999999999999999999")
    assert bad.status_code == 400 and "since" in bad.get_data(as_text=True)
    assert client.get(f"/audit?patient_id={clinic_data['south']}").status_code == 404
    export = client.get(f"/audit.csv?patient_id={clinic_data['ada']}")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    assert "view_patient" in export.get_data(as_text=True)
    assert client.get("/audit.csv?until=soon").status_code == 400


def test_who_saw_a_patient_is_one_indexed_lookup():
    from followup.models import AuditSubject

    index_columns = [c.name for c in AuditSubject.__table__.primary_key.columns]
    assert index_columns[0] == "patient_id"  # the primary key's index serves "events about patient X"
    assert AuditSubject.__table__.c.audit_id.index
