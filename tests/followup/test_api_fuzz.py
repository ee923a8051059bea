"""Fuzzing the API from its own OpenAPI document (schemathesis): every operation, with valid and invalid input,
authenticated; no answer may be a 5xx, and every answer must match what the document declares for it."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from followup.auth import issue_token
from followup.db import db, utcnow
from followup.intake.photos import receive_photo
from followup.models import Alert, Analysis, Site, User
from followup.storage import storage
from tests.conftest import PASSWORD, jpeg_bytes

# Examples per operation and pass: enough to reach each parameter, few enough for CI (well under a minute).
MAX_EXAMPLES = 15
# Operations only an admin may call are fuzzed with an admin's token, the others with a dermatologist's.
ADMIN_TAGS = {"api_users", "api_audit"}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# Operations that end the token they are called with: each case gets a fresh one, so the shared tokens of the
# other operations stay valid for the whole run.
ENDS_ITS_TOKEN = {"DELETE /api/v1/auth/token"}


@pytest.fixture
def known_ids(world, site_id) -> dict[str, int]:
    """A patient, a site with an accepted baseline photo and an open alert of the North clinic, for cases that
    should find them."""
    site = db.session.get(Site, site_id)
    photo = receive_photo(site, jpeg_bytes(), kind="baseline", enqueue=False)
    photo.status = "done"
    alert = Alert(clinic_id=world.clinic.id, site_id=site.id, photo_id=photo.id, priority=2, recurrence_score=0.4,
                  reasons=["seeded"], created_at=utcnow() - timedelta(days=1))
    analysis = Analysis(photo_id=photo.id, reference_photo_id=photo.id, comparison="baseline", registered=True,
                        change_score=0.4, overlays={"heatmap": storage().put(jpeg_bytes(32, 24), ext="jpg")})
    db.session.add_all([alert, analysis])
    db.session.commit()
    return {"patient_id": site.patient_id, "site_id": site.id, "photo_id": photo.id, "alert_id": alert.id,
            "analysis_id": analysis.id, "name": "heatmap"}


def test_every_operation_answers_without_server_error_and_as_documented(app, client, world, known_ids, capsys):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    tokens = {"admin": world.token(client, "admin@north.test"), "derm": world.token(client, "derm@north.test")}
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: dict[str, Counter] = {}
    # Generated ids mostly name nothing (404): one pass puts the known records' ids in the path instead.
    passes = [(schemathesis.GenerationMode.POSITIVE, True), (schemathesis.GenerationMode.POSITIVE, False),
              (schemathesis.GenerationMode.NEGATIVE, False)]
    for operation in operations:
        role = "admin" if ADMIN_TAGS & set(operation.tags or ()) else "derm"
        shared = {"Authorization": f"Bearer {tokens[role]}"}
        for mode, known in passes:
            if known and "{" not in operation.path:
                continue  # no id in its path: the pass would repeat the next one

            @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                if known and case.path_parameters:
                    case.path_parameters = {name: known_ids[name] for name in case.path_parameters}
                headers = shared
                if operation.label in ENDS_ITS_TOKEN:
                    fresh, _ = issue_token(db.session.get(User, world.derm.id), 1)
                    headers = {"Authorization": f"Bearer {fresh}"}
                response = case.call(headers=headers)
                statuses.setdefault(operation.label, Counter())[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            run()
    with capsys.disabled():
        print(f"\nschemathesis: {sum(sum(c.values()) for c in statuses.values())} cases over {len(statuses)} "
              f"operations, 0 server errors")
        for label, codes in statuses.items():
            print(f"  {label}: {dict(sorted(codes.items()))}")
    assert set(statuses) == {operation.label for operation in operations}
    # A run whose token stopped working tests only the 401 answer (and the 404 of an id out of range): every
    # operation must have answered something else at least once (the known ids' pass finds its records).
    stuck = [label for label, codes in statuses.items() if set(codes) <= {401, 404}]
    assert not stuck, f"never got past authentication: {stuck}"
    for role, token in tokens.items():
        assert client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"}).status_code == 200, role


# What the fuzzing found, each as a plain test: ids past the id columns' range (32-bit on PostgreSQL) were 500s.

@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/patients/2147483648"), ("get", "/api/v1/sites/2147483648"),
    ("get", "/api/v1/photos/4294967296/image"), ("get", "/api/v1/analyses/2147483648/overlays/heatmap"),
    ("post", "/api/v1/alerts/2147483648/claim"),
    ("post", "/api/v1/sites/9223372036854775807/upload-link"),
])
def test_an_id_past_the_columns_range_is_not_found(client, world, method, path):
    response = getattr(client, method)(path, headers=world.headers(client, "derm@north.test"))
    assert response.status_code == 404


def test_a_dermatologist_id_past_the_columns_range_is_a_field_error(client, world, patient_id):
    response = client.post(f"/api/v1/patients/{patient_id}/sites", headers=world.headers(client, "derm@north.test"),
                           json={"body_site": "back", "diagnosis": "bcc", "excision_date": "2025-01-01",
                                 "dermatologist_id": 2147483648})
    assert response.status_code == 422 and "dermatologist_id" in response.get_json()["error"]["message"]


def test_a_queue_filter_past_the_columns_range_shows_the_queue(client, world):
    client.post("/login", data={"email": "derm@north.test", "password": PASSWORD})
    assert client.get("/queue?member=2147483648").status_code == 200
