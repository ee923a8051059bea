"""Hostile and odd uploads: a clear 4xx with a JSON error, nothing half-written; metadata stripped."""
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from followup.db import db
from followup.intake.cleaning import IntakeError, clean_photo, sniff_format
from followup.models import Photo
from tests.conftest import jpeg_bytes, png_bytes


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG declaring width×height pixels of zeros (compresses ~1000:1)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = zlib.compress(b"\x00" * (width + 1) * 64, 9)  # only a few rows: the header is what matters
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def gps_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    gps = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}
    exif[0x8825] = gps
    return jpeg_bytes(exif=exif)


def upload(client, headers, site_id, data, name="photo.jpg"):
    return client.post(f"/api/v1/sites/{site_id}/photos", headers=headers,
                       data={"file": (io.BytesIO(data), name), "kind": "followup"}, content_type="multipart/form-data")


def stored_files(app) -> list[Path]:
    root = Path(app.config["MEDIA_ROOT"])
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.parametrize("name, data, status", [
    ("html-renamed", b"<!doctype html><html><body>hi</body></html>", 415),
    ("truncated-jpeg", jpeg_bytes(640, 480)[:3000], 422),
    ("png-bomb", png_bomb(20000, 20000), 413),
    ("empty", b"", 400),
    ("zip", b"PK\x03\x04" + b"\x00" * 100, 415),
])
def test_hostile_uploads_are_refused_cleanly(app, client, world, site_id, name, data, status):
    response = upload(client, world.headers(client, "derm@north.test"), site_id, data)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"]["message"]
    assert db.session.execute(db.select(Photo)).first() is None
    assert stored_files(app) == []


def test_oversized_request_is_413_json(app, client, world, site_id):
    app.config["MAX_CONTENT_LENGTH"] = 5 * 1024 * 1024
    data = b"\xff\xd8\xff" + b"\x00" * (40 * 1024 * 1024)
    response = upload(client, world.headers(client, "derm@north.test"), site_id, data)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert stored_files(app) == []


def test_gps_is_gone_from_the_stored_file(app, client, world, site_id):
    original = gps_jpeg()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825), "fixture must carry GPS"
    response = upload(client, world.headers(client, "derm@north.test"), site_id, original)
    assert response.status_code == 202
    photo = db.session.get(Photo, response.get_json()["id"])
    stored = app.extensions["storage"].get(photo.storage_key)
    image = Image.open(io.BytesIO(stored))
    assert not image.getexif(), "no EXIF at all, GPS included"
    assert b"Exif" not in stored[:4096] and b"PhoneMaker" not in stored
    assert [p.name for p in stored_files(app)] == [photo.storage_key], "no original kept without ORIGINALS_KEY"


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    clean = clean_photo(jpeg_bytes(320, 240, exif=exif), max_pixels=10**8)
    assert (clean.width, clean.height) == (240, 320)


def test_encrypted_original_kept_when_configured(app, client, world, site_id):
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()
    app.config["ORIGINALS_KEY"] = key.decode()
    original = gps_jpeg()
    response = upload(client, world.headers(client, "derm@north.test"), site_id, original)
    photo = db.session.get(Photo, response.get_json()["id"])
    blob = app.extensions["storage"].get(photo.original_key)
    assert b"PhoneMaker" not in blob
    assert Fernet(key).decrypt(blob) == original


@pytest.mark.parametrize("data, fmt", [(jpeg_bytes(), "JPEG"), (png_bytes(), "PNG"), (b"GIF89a", None)])
def test_sniff_format(data, fmt):
    assert sniff_format(data) == fmt


@pytest.mark.parametrize("fmt", ["WEBP", "HEIF"])
def test_webp_and_heic_are_accepted(fmt):
    out = io.BytesIO()
    Image.new("RGB", (96, 64), (180, 120, 110)).save(out, format=fmt, quality=90)
    clean = clean_photo(out.getvalue(), max_pixels=10**8)
    assert clean.source_format == fmt and (clean.width, clean.height) == (96, 64)
    assert Image.open(io.BytesIO(clean.data)).format == "JPEG"


def test_tiny_image_is_refused():
    with pytest.raises(IntakeError) as info:
        clean_photo(png_bytes(8, 8), max_pixels=10**8)
    assert info.value.status == 422


def test_jpeg_comment_blocks_are_dropped():
    out = io.BytesIO()
    Image.new("RGB", (96, 64), (180, 120, 110)).save(out, format="JPEG", comment=b"Patient Jane Doe, DOB 1950")
    assert b"Jane Doe" in out.getvalue(), "fixture must carry a COM block"
    clean = clean_photo(out.getvalue(), max_pixels=10**8)
    assert b"Jane Doe" not in clean.data
    assert "comment" not in Image.open(io.BytesIO(clean.data)).info


def test_multi_picture_jpeg_keeps_the_primary_image_only():
    # An MPO (also the container of Ultra HDR / gain-map JPEGs): the photo, then a second picture.
    primary, second = Image.new("RGB", (96, 64), (180, 120, 110)), Image.new("RGB", (48, 32), (20, 200, 20))
    out = io.BytesIO()
    primary.save(out, format="MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(out.getvalue())).format == "MPO", "fixture must be a multi-picture JPEG"
    clean = clean_photo(out.getvalue(), max_pixels=10**8)
    assert clean.source_format == "JPEG" and (clean.width, clean.height) == (96, 64)
    stored = Image.open(io.BytesIO(clean.data))
    assert stored.format == "JPEG" and getattr(stored, "n_frames", 1) == 1
    assert abs(int(stored.getpixel((48, 32))[1]) - 120) < 8, "the primary picture, not the second"
