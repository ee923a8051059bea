"""A process killed between storing a photo and finishing its job loses nothing."""
import io
import time

from app import create_app
from followup import jobs
from followup.db import db, utcnow
from followup.models import Alert, Photo
from tests.conftest import jpeg_bytes


def _upload(client, world, site_id) -> int:
    response = client.post(f"/api/v1/sites/{site_id}/photos", headers=world.headers(client, "derm@north.test"),
                           data={"file": (io.BytesIO(jpeg_bytes()), "a.jpg"), "kind": "baseline"},
                           content_type="multipart/form-data")
    assert response.status_code == 202
    return response.get_json()["id"]


def test_queued_photo_is_picked_up_by_the_next_process(app_config, app, client, world, site_id):
    app.config["JOB_BACKEND"] = "deferred"  # the first process dies before any worker runs the job
    photo_id = _upload(client, world, site_id)
    assert db.session.get(Photo, photo_id).status == "queued"
    assert app.extensions["storage"].exists(db.session.get(Photo, photo_id).storage_key)

    restarted = create_app({**app_config, "JOB_BACKEND": "inprocess"})
    worker = jobs.start_worker(restarted)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            db.session.expire_all()
            if db.session.get(Photo, photo_id).status not in ("queued", "processing"):
                break
            time.sleep(0.1)
    finally:
        worker.stop()
    assert db.session.get(Photo, photo_id).status == "done"


def test_photo_left_processing_by_a_dead_worker_is_retried(app, client, world, site_id):
    app.config["JOB_BACKEND"] = "deferred"
    photo_id = _upload(client, world, site_id)
    photo = db.session.get(Photo, photo_id)
    photo.status, photo.status_changed_at, photo.attempts = "processing", utcnow() - jobs.STALE_AFTER * 2, 1
    db.session.commit()
    assert jobs.drain() == 1
    assert db.session.get(Photo, photo_id).status == "done"


def test_a_job_run_twice_does_nothing_the_second_time(app, client, world, site_id):
    app.config["JOB_BACKEND"] = "deferred"
    photo_id = _upload(client, world, site_id)
    jobs.run_photo_job(photo_id)
    jobs.run_photo_job(photo_id)
    photo = db.session.get(Photo, photo_id)
    assert photo.status == "done" and photo.attempts == 1
    assert jobs.claim(photo_id) is False


def test_a_processing_failure_is_recorded_and_retried_then_visible(app, client, world, site_id, monkeypatch):
    import followup.processing

    app.config["JOB_BACKEND"] = "deferred"
    photo_id = _upload(client, world, site_id)

    def broken(photo):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(followup.processing, "process_photo", broken)
    jobs.drain()
    photo = db.session.get(Photo, photo_id)
    assert photo.status == "failed" and "disk on fire" in photo.status_detail
    assert photo.attempts == jobs.MAX_ATTEMPTS
    assert app.extensions["storage"].exists(photo.storage_key), "the photo itself is kept"
    [alert] = db.session.execute(db.select(Alert)).scalars()
    assert (alert.kind, alert.photo_id) == ("needs_review", photo_id), "a person looks at it"
    assert jobs.claim(photo_id) is False, "no fourth attempt"


def test_a_photo_whose_last_attempt_died_is_failed_and_shown_to_a_person(app, client, world, site_id):
    app.config["JOB_BACKEND"] = "deferred"
    photo_id = _upload(client, world, site_id)
    photo = db.session.get(Photo, photo_id)
    photo.status, photo.attempts = "processing", jobs.MAX_ATTEMPTS
    photo.status_changed_at = utcnow() - jobs.STALE_AFTER * 2
    db.session.commit()
    assert jobs.drain() == 0
    assert db.session.get(Photo, photo_id).status == "failed"
    assert db.session.execute(db.select(Alert.kind)).scalar_one() == "needs_review"
