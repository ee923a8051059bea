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
