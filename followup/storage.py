"""Content-addressed blob storage: local disk by default, any S3-compatible store by configuration.

Keys are ``<sha256>.<ext>``, so storing the same bytes twice is harmless and a job can be retried.
Nothing here is served directly: photos go out only through authorised views.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from flask import Flask, current_app


class Storage(Protocol):
    def put(self, data: bytes, *, ext: str) -> str: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


def content_key(data: bytes, ext: str) -> str:
    return f"{hashlib.sha256(data).hexdigest()}.{ext.lstrip('.')}"


def _check_key(key: str) -> str:
    stem, _, ext = key.partition(".")
    if len(stem) != 64 or not all(c in "0123456789abcdef" for c in stem) or not ext.isalnum():
        raise ValueError(f"not a storage key: {key!r}")
    return key


class LocalStorage:
    """Files under ``root/ab/cd/<key>``, written atomically (temp file + rename)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes, *, ext: str) -> str:
        key = content_key(data, ext)
        path = self._path(key)
        if path.exists():
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Storage:
    """An S3-compatible bucket (AWS, MinIO, Ceph…); credentials come from the usual AWS variables."""

    def __init__(self, bucket: str, *, prefix: str = "media/", endpoint_url: str | None = None, client=None):
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url or None)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def put(self, data: bytes, *, ext: str) -> str:
        key = content_key(data, ext)
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        return key

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + _check_key(key))["Body"].read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + _check_key(key))
        except ClientError:
            return False
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + _check_key(key))


def init_app(app: Flask) -> None:
    backend = app.config["STORAGE_BACKEND"]
    if backend == "local":
        app.extensions["storage"] = LocalStorage(app.config["MEDIA_ROOT"])
    elif backend == "s3":
        if not app.config["S3_BUCKET"]:
            raise RuntimeError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        app.extensions["storage"] = S3Storage(
            app.config["S3_BUCKET"], prefix=app.config["S3_PREFIX"], endpoint_url=app.config["S3_ENDPOINT_URL"]
        )
    else:
        raise RuntimeError(f"STORAGE_BACKEND must be local or s3, not {backend!r}")


def image_mimetype(key: str) -> str:
    """The content type of a stored image, from its key's ending."""
    return "image/png" if key.endswith(".png") else "image/webp" if key.endswith(".webp") else "image/jpeg"


def storage() -> Storage:
    return current_app.extensions["storage"]
