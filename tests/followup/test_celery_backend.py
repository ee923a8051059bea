"""JOB_BACKEND=celery hands the same job (an id) to a Celery task."""
import io

from followup import celery_app
from followup.db import db
from followup.models import Photo
from tests.conftest import jpeg_bytes


def test_celery_task_runs_the_photo_job(app, client, world, site_id, monkeypatch):
    app.config["JOB_BACKEND"] = "celery"
    monkeypatch.setattr(celery_app, "_app", app)  # the worker would build its own app from the environment
    monkeypatch.setitem(celery_app.celery.conf, "task_always_eager", True)
    sent = []
    original = celery_app.analyze_photo_task.delay
    monkeypatch.setattr(celery_app.analyze_photo_task, "delay", lambda photo_id: sent.append(photo_id) or original(photo_id))
    response = client.post(f"/api/v1/sites/{site_id}/photos", headers=world.headers(client, "derm@north.test"),
                           data={"file": (io.BytesIO(jpeg_bytes()), "a.jpg"), "kind": "baseline"},
                           content_type="multipart/form-data")
    photo_id = response.get_json()["id"]
    assert sent == [photo_id], "the task receives the id only"
    db.session.expire_all()
    assert db.session.get(Photo, photo_id).status in ("done", "rejected")
