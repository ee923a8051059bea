"""Fuzzing the API from its own OpenAPI document (schemathesis): every operation, with valid and invalid input,
authenticated; no answer may be a 5xx, and every answer must match what the document declares for it."""
from __future__ import annotations

import pytest

from tests.conftest import PASSWORD


# What the fuzzing found, each as a plain test: ids past the id columns' range (32-bit on PostgreSQL) were 500s.

@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/patients/2147483648"), ("get", "/api/v1/sites/2147483648"),
    ("get", "/api/v1/photos/4294967296/image"), ("post", "/api/v1/alerts/2147483648/claim"),
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
