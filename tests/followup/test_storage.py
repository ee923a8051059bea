"""Both storage backends keep content-addressed blobs behind one interface."""
import boto3
import pytest
from moto import mock_aws

from followup.storage import LocalStorage, S3Storage, content_key


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        yield LocalStorage(tmp_path / "media")
        return
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="scarwatch")
        yield S3Storage("scarwatch", client=client)


def test_put_get_exists_delete(store):
    key = store.put(b"pixels", ext="jpg")
    assert key == content_key(b"pixels", "jpg") and key.endswith(".jpg")
    assert store.put(b"pixels", ext="jpg") == key, "same bytes, same key"
    assert store.exists(key) and store.get(key) == b"pixels"
    store.delete(key)
    assert not store.exists(key)


@pytest.mark.parametrize("key", ["../../etc/passwd", "abc.jpg", "0" * 64 + "./x"])
def test_keys_cannot_escape(store, key):
    with pytest.raises(ValueError):
        store.get(key)


def test_local_files_live_outside_static(app):
    from pathlib import Path

    media = Path(app.config["MEDIA_ROOT"]).resolve()
    assert Path(app.static_folder).resolve() not in media.parents


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on a free loopback port, spoken to over HTTP by the real boto3 client."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # moto without its [server] extra (flask-cors, ...)
        pytest.skip(f"moto[server] is not installed: {exc}")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    import uuid

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    bucket = f"scarwatch-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    return {"STORAGE_BACKEND": "s3", "S3_BUCKET": bucket, "S3_ENDPOINT_URL": s3_server, "S3_PREFIX": "media/"}


def test_s3_over_http_with_the_real_client(s3_env):
    store = S3Storage(s3_env["S3_BUCKET"], endpoint_url=s3_env["S3_ENDPOINT_URL"])
    key = store.put(b"pixels", ext="jpg")
    assert store.exists(key) and store.get(key) == b"pixels"
    listed = boto3.client("s3", endpoint_url=s3_env["S3_ENDPOINT_URL"]).list_objects_v2(Bucket=s3_env["S3_BUCKET"])
    assert [item["Key"] for item in listed["Contents"]] == [f"media/{key}"]
    store.delete(key)
    assert not store.exists(key)


@pytest.fixture
def s3_app_config(app_config, s3_env):
    """The app of the test (requested after this) stores in the S3 server."""
    app_config.update(s3_env)
    return app_config


def test_an_upload_is_stored_and_analysed_in_s3(s3_app_config, app, client, world, site_id):
    """STORAGE_BACKEND=s3 end to end: the API stores the photo in the bucket, the job reads it back from there;
    nothing goes to MEDIA_ROOT."""
    import io
    from pathlib import Path

    from followup.db import db
    from followup.models import Photo
    from tests.conftest import jpeg_bytes

    response = client.post(f"/api/v1/sites/{site_id}/photos", headers=world.headers(client, "derm@north.test"),
                           data={"file": (io.BytesIO(jpeg_bytes()), "a.jpg"), "kind": "baseline"},
                           content_type="multipart/form-data")
    assert response.status_code == 202
    photo = db.session.get(Photo, response.get_json()["id"])
    assert photo.status == "done"
    bucket = boto3.client("s3", endpoint_url=s3_app_config["S3_ENDPOINT_URL"])
    keys = {item["Key"] for item in bucket.list_objects_v2(Bucket=s3_app_config["S3_BUCKET"])["Contents"]}
    assert f"media/{photo.storage_key}" in keys
    assert not list(Path(s3_app_config["MEDIA_ROOT"]).rglob("*.jpg"))
