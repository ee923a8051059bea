"""Every route × every kind of caller gives the intended status, and nothing leaks across clinics."""
import io
from datetime import date, timedelta

import pytest

from followup.db import db
from followup.models import Alert, Patient
from followup.records import links
from followup.records.patients import create_patient, create_site
from tests.conftest import jpeg_bytes

CALLERS = ("anonymous", "other_site_link", "other_clinic_derm", "derm", "admin")

# (method, path template, body kind, expected status per caller in CALLERS order)
MATRIX = [
    ("GET", "/healthz", None, (200, 200, 200, 200, 200)),
    ("GET", "/api/v1/openapi.json", None, (200, 200, 200, 200, 200)),
    ("GET", "/api/v1/patients/{patient}", None, (401, 401, 404, 200, 200)),
    ("POST", "/api/v1/patients", "patient", (401, 401, 201, 201, 201)),
    ("POST", "/api/v1/patients/{patient}/sites", "site", (401, 401, 404, 201, 201)),
    ("GET", "/api/v1/sites/{site}", None, (401, 401, 404, 200, 200)),
    ("PUT", "/api/v1/sites/{site}/outline", "outline", (401, 401, 404, 200, 200)),
    ("POST", "/api/v1/sites/{site}/photos", "photo", (401, 401, 404, 202, 202)),
    ("GET", "/api/v1/photos/{photo}", None, (401, 401, 404, 200, 200)),
    ("GET", "/api/v1/photos/{photo}/image", None, (401, 401, 404, 200, 200)),
    ("POST", "/api/v1/sites/{site}/upload-link", None, (401, 401, 404, 200, 200)),
    ("GET", "/api/v1/alerts?status=open", None, (401, 401, 200, 200, 200)),
    ("POST", "/api/v1/alerts/{alert}/claim", None, (401, 401, 404, 200, 403)),
    ("POST", "/api/v1/alerts/{alert}/resolve", "resolve", (401, 401, 404, 200, 403)),
    ("GET", "/api/v1/users", None, (401, 401, 403, 403, 200)),
    ("POST", "/api/v1/users", "user", (401, 401, 403, 403, 201)),
    ("GET", "/", None, (302, 302, 302, 302, 302)),
]


@pytest.fixture
def records(client, world, site_id):
    """The North clinic's patient, site, photo and alert, plus a South clinic site's patient link."""
    headers = world.headers(client, "derm@north.test")
    photo = client.post(f"/api/v1/sites/{site_id}/photos", headers=headers, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(jpeg_bytes()), "a.jpg"), "kind": "baseline"}).get_json()
    site = db.session.get(Patient, 1).sites[0]
    alert = Alert(clinic_id=world.clinic.id, site_id=site_id, photo_id=photo["id"], priority=1,
                  recurrence_score=0.8, reasons=["new dark area"])
    db.session.add(alert)
    south_patient = create_patient(world.other_clinic, name="Other Person", phone="+447700900999", sms_consent=True)
    south_site = create_site(south_patient, body_site="back", diagnosis="scc", excision_date=date.today())
    db.session.flush()
    token, _ = links.create_link(south_site)
    db.session.commit()
    return {"patient": site.patient_id, "site": site_id, "photo": photo["id"], "alert": alert.id,
            "south_link": token}


def caller_headers(client, world, records, caller) -> dict:
    if caller == "anonymous":
        return {}
    if caller == "other_site_link":
        return {"Authorization": f"Bearer {records['south_link']}"}
    email = {"other_clinic_derm": "derm@south.test", "derm": "derm@north.test", "admin": "admin@north.test"}[caller]
    return world.headers(client, email)


def request_kwargs(body: str | None) -> dict:
    if body == "patient":
        return {"json": {"name": "New Patient", "phone": "+447700900321", "sms_consent": True}}
    if body == "site":
        return {"json": {"body_site": "scalp", "diagnosis": "bcc",
                         "excision_date": (date.today() - timedelta(days=3)).isoformat()}}
    if body == "photo":
        return {"data": {"file": (io.BytesIO(jpeg_bytes(seed=3)), "b.jpg"), "kind": "followup"},
                "content_type": "multipart/form-data"}
    if body == "outline":
        return {"json": {"polygon": [[10, 10], [60, 10], [60, 50]]}}
    if body == "resolve":
        return {"json": {"outcome": "no_change"}}
    if body == "user":
        return {"json": {"email": "new@north.test", "password": "a-long-enough-password", "role": "dermatologist"}}
    return {}


@pytest.mark.parametrize("method, path, body, expected", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
@pytest.mark.parametrize("caller_index", range(len(CALLERS)), ids=CALLERS)
def test_authorization_matrix(client, world, records, method, path, body, expected, caller_index):
    caller = CALLERS[caller_index]
    headers = caller_headers(client, world, records, caller)
    url = path.format(**records)
    response = client.open(url, method=method, headers=headers, **request_kwargs(body))
    assert response.status_code == expected[caller_index], response.get_data(as_text=True)[:300]
    if caller in ("anonymous", "other_site_link", "other_clinic_derm"):
        text = response.get_data(as_text=True)
        for secret in ("Grace Hopper", "+447700900456", "left shoulder", "new dark area"):
            assert secret not in text
    if caller == "derm" and url.startswith("/api/v1/alerts?"):
        assert [a["id"] for a in response.get_json()["items"]] == [records["alert"]]
    if caller == "other_clinic_derm" and url.startswith("/api/v1/alerts?"):
        assert response.get_json()["items"] == []
