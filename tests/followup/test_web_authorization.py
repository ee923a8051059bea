"""Staff pages × callers: signed-out (and patient-link holders, who have no session) go to sign-in;
another clinic's dermatologist finds nothing; roles decide the rest. Nothing leaks across clinics."""
import io

import pytest
from PIL import Image

from followup.db import db
from followup.models import Alert, Analysis, Photo
from followup.storage import storage
from tests.conftest import PASSWORD

CALLERS = ("anonymous", "other_clinic_derm", "derm", "admin")
PAGES = [
    ("GET", "/queue", (302, 200, 200, 200)),
    ("GET", "/alerts/{alert}", (302, 404, 200, 200)),
    ("GET", "/patients/{patient}", (302, 404, 200, 200)),
    ("GET", "/photos/{photo}/image", (302, 404, 200, 200)),
    ("GET", "/analyses/{analysis}/overlay/aligned", (302, 404, 200, 200)),
    ("POST", "/alerts/{alert}/resolve", (302, 404, None, 403)),
    ("GET", "/users", (302, 403, 403, 200)),
    ("GET", "/performance", (302, 200, 200, 200)),
]


@pytest.fixture
def records(world, site_id):
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (190, 140, 120)).save(out, format="JPEG")
    key = storage().put(out.getvalue(), ext="jpg")
    photo = Photo(site_id=site_id, kind="followup", sha256=key[:64], storage_key=key, content_type="image/jpeg",
                  size_bytes=1, width=64, height=48, status="done")
    db.session.add(photo)
    db.session.flush()
    analysis = Analysis(photo_id=photo.id, comparison="baseline", registered=True, overlays={"aligned": key},
                        quality={"usable": True, "reasons": []}, regions=[], reasons=["secret reason"])
    alert = Alert(clinic_id=world.clinic.id, site_id=site_id, photo_id=photo.id, priority=1, recurrence_score=0.9,
                  reasons=["secret reason"])
    db.session.add_all([analysis, alert])
    db.session.commit()
    return {"alert": alert.id, "patient": photo.site.patient_id, "photo": photo.id, "analysis": analysis.id}


@pytest.mark.parametrize("method, path, expected", PAGES, ids=[f"{m} {p}" for m, p, _ in PAGES])
@pytest.mark.parametrize("caller_index", range(len(CALLERS)), ids=CALLERS)
def test_staff_pages_matrix(client, world, records, method, path, expected, caller_index):
    caller = CALLERS[caller_index]
    if caller != "anonymous":
        email = {"other_clinic_derm": "derm@south.test", "derm": "derm@north.test", "admin": "admin@north.test"}[caller]
        assert client.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
    response = client.open(path.format(**records), method=method, data={"outcome": "no_change", "note": ""})
    if expected[caller_index] is None:  # the dermatologist resolves: redirect back to the queue
        assert response.status_code in (200, 302, 303)
    else:
        assert response.status_code == expected[caller_index], response.get_data(as_text=True)[:300]
    if caller in ("anonymous", "other_clinic_derm"):
        text = response.get_data(as_text=True)
        assert "Grace Hopper" not in text and "secret reason" not in text
