"""JOB_BACKEND=celery against a real Redis with an embedded Celery worker (``celery.contrib.testing``).

Each test routes the tasks to queues of its own (``TEST_REDIS_URL``, default db 15 of the local Redis), so it
neither sees nor leaves messages of any other run; the tests skip when no Redis answers.
"""
from __future__ import annotations

import io
import os
import time
import uuid
from datetime import timedelta

import pytest

from app import create_app
from followup.analysis import jobs
from followup.analysis.celery_app import ANALYZE_PHOTO, DELIVER_OUTBOX
from followup.db import db, utcnow
from followup.models import Analysis, Photo
from tests.conftest import jpeg_bytes

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return client


@pytest.fixture
def queues():
    """Queue names of this test's own, and the Redis they live in; deleted afterwards."""
    client = _redis()
    tag = uuid.uuid4().hex[:8]
    names = {ANALYZE_PHOTO: f"photos-{tag}", DELIVER_OUTBOX: f"messages-{tag}"}
    yield client, names
    client.delete(*names.values(), *(f"{name}\x06\x16{p}" for name in names.values() for p in range(1, 10)),
                  *(f"_kombu.{kind}.{name}" for kind in ("binding", "binding_permanent") for name in names.values()))


def celery_config(names: dict, broker_url: str = REDIS_URL) -> dict:
    return {"broker_url": broker_url, "task_routes": {task: {"queue": queue} for task, queue in names.items()},
            "broker_transport_options": {"visibility_timeout": 60, "socket_connect_timeout": 1}}


@pytest.fixture
def app_config(app_config, queues):
    _, names = queues
    return {**app_config, "JOB_BACKEND": "celery", "CELERY": celery_config(names)}


@pytest.fixture
def worker(app, queues):
    """A Celery worker in a thread of this process, consuming this test's photo queue (solo pool)."""
    from celery.contrib.testing.worker import start_worker

    _, names = queues

    def start(flask_app=app):
        return start_worker(flask_app.extensions["celery"], pool="solo", perform_ping_check=False,
                            queues=[names[ANALYZE_PHOTO]], shutdown_timeout=30)

    return start


def _upload(client, world, site_id) -> tuple[int, float]:
    started = time.monotonic()
    response = client.post(f"/api/v1/sites/{site_id}/photos", headers=world.headers(client, "derm@north.test"),
                           data={"file": (io.BytesIO(jpeg_bytes()), "a.jpg"), "kind": "baseline"},
                           content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["status"] in ("queued", "processing", "done")  # a running worker may be quick
    return response.get_json()["id"], time.monotonic() - started


def _wait_until_finished(photo_id: int, seconds: float = 60) -> Photo:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.expire_all()
        photo = db.session.get(Photo, photo_id)
        if photo.status not in ("queued", "processing"):
            return photo
        time.sleep(0.1)
    raise AssertionError(f"photo {photo_id} still {photo.status} after {seconds} s")


def _analyses(photo_id: int) -> int:
    return len(db.session.execute(db.select(Analysis.id).where(Analysis.photo_id == photo_id)).all())


def test_an_uploaded_photo_is_analysed_by_a_celery_worker(app, client, world, site_id, worker, queues):
    redis_client, names = queues
    with worker():
        photo_id, _ = _upload(client, world, site_id)
        photo = _wait_until_finished(photo_id)
    assert (photo.status, photo.attempts) == ("done", 1)
    assert _analyses(photo_id) == 1, "analysed exactly once"
    assert redis_client.llen(names[ANALYZE_PHOTO]) == 0


def test_a_message_lost_from_the_broker_is_sent_again(app, client, world, site_id, worker, queues):
    redis_client, names = queues
    photo_id, _ = _upload(client, world, site_id)  # no worker yet: the message waits in Redis
    assert db.session.get(Photo, photo_id).status == "queued"
    assert redis_client.llen(names[ANALYZE_PHOTO]) == 1
    redis_client.delete(names[ANALYZE_PHOTO])  # the broker loses it (restarted empty, evicted, ...)
    assert jobs.resend_due() == {"photos_resent": 0, "photos_send_failed": 0}, "sent moments ago: not yet"
    later = utcnow() + timedelta(seconds=app.config["PHOTO_RESEND_SECONDS"])
    assert jobs.resend_due(later) == {"photos_resent": 1, "photos_send_failed": 0}
    with worker():
        photo = _wait_until_finished(photo_id)
    assert (photo.status, photo.attempts, _analyses(photo_id)) == ("done", 1, 1)


def test_a_broker_error_at_upload_answers_success_and_the_resend_sends_it(app_config, app, client, world, site_id,
                                                                         worker, queues):
    _, names = queues
    app.extensions["celery"].conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens there
    photo_id, seconds = _upload(client, world, site_id)
    assert seconds < 10, "a broker that is down does not hold the upload long"
    photo = db.session.get(Photo, photo_id)
    assert photo.status == "queued" and photo.enqueued_at is not None
    assert client.get(f"/api/v1/photos/{photo_id}",
                      headers=world.headers(client, "derm@north.test")).get_json()["status"] == "queued"

    revived = create_app(app_config)  # the broker is back (another process: the scheduler)
    later = utcnow() + timedelta(seconds=app.config["PHOTO_RESEND_SECONDS"])
    with revived.app_context():
        assert jobs.resend_due(later) == {"photos_resent": 1, "photos_send_failed": 0}
    with worker(revived):
        photo = _wait_until_finished(photo_id)
    assert (photo.status, photo.attempts, _analyses(photo_id)) == ("done", 1, 1)


def test_a_photo_left_processing_by_a_dead_worker_is_sent_again_and_analysed_once(app, client, world, site_id,
                                                                                 worker, queues):
    redis_client, names = queues
    photo_id, _ = _upload(client, world, site_id)
    assert jobs.claim(photo_id)  # a worker took it, then died: no heartbeat, no result, its message gone
    redis_client.delete(names[ANALYZE_PHOTO])
    assert jobs.resend_due()["photos_resent"] == 0, "its claim is fresh: the worker may be alive"
    later = utcnow() + timedelta(seconds=app.config["PHOTO_STALE_SECONDS"] + 1)
    assert jobs.resend_due(later)["photos_resent"] == 1
    db.session.execute(db.update(Photo).where(Photo.id == photo_id)
                       .values(status_changed_at=utcnow() - jobs.stale_after() * 2))
    db.session.commit()  # (the worker below runs on the real clock)
    with worker():
        photo = _wait_until_finished(photo_id)
    assert (photo.status, photo.attempts, _analyses(photo_id)) == ("done", 2, 1)
