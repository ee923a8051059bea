"""A process killed between storing a photo and finishing its job loses nothing."""
import io
import time
from datetime import timedelta

import pytest

from app import create_app
from followup.analysis import jobs
from followup.db import db, utcnow
from followup.models import Alert, Analysis, Photo
from tests.conftest import PASSWORD, jpeg_bytes


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


class Clock:
    """``followup.analysis.jobs``' idea of now, moved by hand."""

    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_a_processing_failure_is_retried_with_exponential_backoff_then_visible(app, client, world, site_id,
                                                                               monkeypatch):
    """Three attempts within milliseconds, then "needs review", was the old way: each retry now waits (2 min,
    then 8), and the photo's status — on the patient page and in the API — says when the next attempt is."""
    app.config["JOB_BACKEND"] = "deferred"
    photo_id = _upload(client, world, site_id)
    clock = Clock()
    monkeypatch.setattr(jobs, "utcnow", clock)

    def broken(photo):
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(app.extensions, "photo_job", broken)
    assert jobs.drain() == 1, "one attempt; the retry waits"
    photo = db.session.get(Photo, photo_id)
    assert (photo.status, photo.attempts) == ("queued", 1) and "disk on fire" in photo.status_detail
    assert photo.next_attempt_at == clock.now + timedelta(seconds=120)
    assert jobs.drain() == 0 and jobs.claim(photo_id) is False, "not before its time"

    headers = world.headers(client, "derm@north.test")
    body = client.get(f"/api/v1/photos/{photo_id}", headers=headers).get_json()
    assert body["status"] == "queued" and body["attempts"] == 1
    assert body["next_attempt_at"].startswith(photo.next_attempt_at.strftime("%Y-%m-%dT%H:%M:%S"))
    client.post("/login", data={"email": "derm@north.test", "password": PASSWORD})
    page = client.get(f"/patients/{photo.site.patient_id}").get_data(as_text=True)
    assert f"next attempt {photo.next_attempt_at.strftime('%d %b %Y %H:%M UTC')}" in page

    clock.advance(121)
    assert jobs.drain() == 1
    db.session.expire_all()
    photo = db.session.get(Photo, photo_id)
    assert (photo.status, photo.attempts) == ("queued", 2)
    assert photo.next_attempt_at == clock.now + timedelta(seconds=480), "exponential: four times longer"
    clock.advance(479)
    assert jobs.drain() == 0
    assert db.session.execute(db.select(Alert)).first() is None, "nobody is bothered while retries remain"
    clock.advance(2)
    assert jobs.drain() == 1
    db.session.expire_all()
    photo = db.session.get(Photo, photo_id)
    assert photo.status == "failed" and "disk on fire" in photo.status_detail and photo.next_attempt_at is None
    assert photo.attempts == jobs.MAX_ATTEMPTS
    assert app.extensions["storage"].exists(photo.storage_key), "the photo itself is kept"
    [alert] = db.session.execute(db.select(Alert)).scalars()
    assert (alert.kind, alert.photo_id) == ("needs_review", photo_id), "a person looks at it"
    assert jobs.claim(photo_id) is False, "no fourth attempt"
    assert client.get(f"/api/v1/photos/{photo_id}", headers=headers).get_json()["next_attempt_at"] is None


def test_under_celery_a_failed_attempt_is_sent_again_once_due_and_not_before(app, client, world, site_id,
                                                                            monkeypatch):
    """No ETA task waits in the broker for a retry: the photo stays queued with its time, and the scheduler's
    re-send sends it once that time has come (and an early redelivery does nothing)."""
    app.config["JOB_BACKEND"] = "celery"
    sent = []
    monkeypatch.setattr(jobs, "_send", lambda photo_id: sent.append(photo_id) or True)
    photo_id = _upload(client, world, site_id)
    assert sent == [photo_id], "sent once the row was committed"
    monkeypatch.setitem(app.extensions, "photo_job", lambda photo: 1 / 0)
    jobs.run_photo_job(photo_id)  # the worker runs the task: it fails
    photo = db.session.get(Photo, photo_id)
    assert photo.status == "queued" and photo.next_attempt_at > utcnow() and photo.enqueued_at is None
    assert jobs.resend_due() == {"photos_resent": 0, "photos_send_failed": 0}, "not before its time"
    jobs.run_photo_job(photo_id)  # a redelivery before that time: not run
    assert db.session.get(Photo, photo_id).attempts == 1
    assert jobs.resend_due(photo.next_attempt_at + timedelta(seconds=1))["photos_resent"] == 1
    assert sent == [photo_id, photo_id]


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

def _analyses(photo_id: int) -> int:
    return len(db.session.execute(db.select(Analysis.id).where(Analysis.photo_id == photo_id)).all())


def test_a_worker_given_up_for_dead_writes_nothing(app, client, world, site_id):
    """Its claim was taken over and finished by another worker: its late results are refused."""
    from followup.analysis import processing

    app.config["JOB_BACKEND"] = "deferred"
    photo_id = _upload(client, world, site_id)
    assert jobs.claim(photo_id)
    db.session.execute(db.update(Photo).where(Photo.id == photo_id)
                       .values(status_changed_at=utcnow() - jobs.stale_after() * 2))
    db.session.commit()
    jobs.run_photo_job(photo_id)  # another worker: attempt 2, done
    assert _analyses(photo_id) == 1
    db.session.info["photo_claim"] = (photo_id, 1)  # the first worker wakes up and finishes its attempt
    try:
        with pytest.raises(jobs.ClaimLost):
            processing.process_photo(db.session.get(Photo, photo_id))
    finally:
        db.session.info.pop("photo_claim")
        db.session.rollback()
    assert _analyses(photo_id) == 1 and db.session.get(Photo, photo_id).attempts == 2


def test_the_heartbeat_keeps_a_long_analysis_from_looking_stale(app, client, world, site_id, monkeypatch):
    import threading

    app.config.update(JOB_BACKEND="deferred", PHOTO_STALE_SECONDS=0.6)
    photo_id = _upload(client, world, site_id)
    original = app.extensions["photo_job"]
    started = threading.Event()

    def slow(photo):
        started.set()
        time.sleep(1.5)  # two and a half stale periods
        original(photo)

    monkeypatch.setitem(app.extensions, "photo_job", slow)
    def worker():
        with app.app_context():
            jobs.run_photo_job(photo_id)

    job = threading.Thread(target=worker)
    job.start()
    started.wait(10)
    seen = []
    while job.is_alive():
        seen.append(jobs.pending_photo_ids())
        time.sleep(0.2)
    job.join()
    assert seen and all(ids == [] for ids in seen), "never offered to another worker while it ran"
    db.session.expire_all()
    photo = db.session.get(Photo, photo_id)
    assert (photo.status, photo.attempts, _analyses(photo_id)) == ("done", 1, 1)
