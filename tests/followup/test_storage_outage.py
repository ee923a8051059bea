"""A photo store that cannot be reached, or a full disk, answers 503 with Retry-After and records nothing."""
import errno
import io

import pytest
from botocore.exceptions import EndpointConnectionError
from sqlalchemy import func, select

from followup.db import db
from followup.models import Photo
from followup.storage import LocalStorage
from tests.conftest import jpeg_bytes


@pytest.mark.parametrize("outage", [EndpointConnectionError(endpoint_url="http://s3.test"),
                                    OSError(errno.ENOSPC, "No space left on device")])
def test_upload_during_a_storage_outage_is_a_503_and_writes_nothing(app, client, world, site_id, monkeypatch,
                                                                    outage):
    def put(self, data, *, ext):
        raise outage

    monkeypatch.setattr(LocalStorage, "put", put)
    response = client.post(f"/api/v1/sites/{site_id}/photos", headers=world.headers(client, "derm@north.test"),
                           data={"file": (io.BytesIO(jpeg_bytes()), "a.jpg"), "kind": "baseline"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert db.session.execute(select(func.count()).select_from(Photo)).scalar_one() == 0


def test_other_os_errors_stay_500(app, client, world, site_id, monkeypatch):
    def put(self, data, *, ext):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(LocalStorage, "put", put)
    response = client.post(f"/api/v1/sites/{site_id}/photos", headers=world.headers(client, "derm@north.test"),
                           data={"file": (io.BytesIO(jpeg_bytes()), "a.jpg"), "kind": "baseline"})
    assert response.status_code == 500
