"""Checking and cleaning an uploaded photo before anything is stored.

Decided by content, never by file name or Content-Type: JPEG, PNG, WebP and HEIC/HEIF are accepted;
of a multi-picture JPEG (MPO, the container of recent phones' Ultra HDR / gain-map photos) the primary
picture only. The stored file holds pixels only (EXIF orientation applied, then every metadata block
dropped — EXIF with GPS, comments, colour profiles, further pictures), re-encoded as a high-quality JPEG.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

import pillow_heif
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

pillow_heif.register_heif_opener()

ALLOWED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heic"}
#: What the decoder may call a file whose magic bytes say JPEG: a multi-picture JPEG opens as MPO
#: positioned on its primary picture.
_JPEG_DECODED_AS = {"JPEG", "MPO"}
MIN_SIDE = 32
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867


class IntakeError(ValueError):
    """A photo that cannot be accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class CleanPhoto:
    data: bytes  # JPEG bytes without metadata
    width: int
    height: int
    source_format: str
    captured_at: Optional[datetime]


def sniff_format(data: bytes) -> Optional[str]:
    """The image format named by the file's magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis"):
        return "HEIF"
    return None


def clean_photo(data: bytes, *, max_pixels: int) -> CleanPhoto:
    """Validate an upload and return its pixels re-encoded without metadata.

    Raises
    ------
    IntakeError
        With a code and an HTTP status: empty, not an image, unsupported, too many pixels, damaged.
    """
    if not data:
        raise IntakeError("empty_file", "The file is empty.", 400)
    fmt = sniff_format(data)
    if fmt is None:
        raise IntakeError(
            "unsupported_media_type", "The file is not a JPEG, PNG, WebP or HEIC photo.", 415
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            decoded = "JPEG" if fmt == "JPEG" and image.format in _JPEG_DECODED_AS else image.format
            if decoded not in ALLOWED_FORMATS or (decoded == "HEIF") != (fmt == "HEIF"):
                raise IntakeError("unsupported_media_type", "The file's content does not match a photo format.", 415)
            # Checked on the header, before any pixel is decoded (decompression bombs).
            if width * height > max_pixels:
                raise IntakeError(
                    "image_too_large",
                    f"The photo has {width}×{height} pixels; at most {max_pixels:,} are accepted.",
                    413,
                )
            if min(width, height) < MIN_SIDE:
                raise IntakeError("image_too_small", f"The photo is only {width}×{height} pixels.", 422)
            captured_at = _captured_at(image)
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = _to_srgb(image)
    except IntakeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise IntakeError("image_too_large", "The photo has too many pixels.", 413)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise IntakeError("damaged_image", f"The photo could not be read completely ({exc}).", 422)
    # Nothing of the upload's metadata rides along (Pillow would write a comment, EXIF or profile
    # kept in `info`): the pixels only.
    rgb.info = {}
    out = io.BytesIO()
    # 4:4:4 chroma and high quality: small lesions' colour edges matter to the analysis.
    rgb.save(out, format="JPEG", quality=95, subsampling=0, optimize=True)
    return CleanPhoto(out.getvalue(), rgb.width, rgb.height, fmt, captured_at)


def _to_srgb(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image.convert("RGB"), source, ImageCms.createProfile("sRGB"))
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: keep the pixels as they are
    return image.convert("RGB")


def _captured_at(image: Image.Image) -> Optional[datetime]:
    try:
        value = image.getexif().get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL)
        if not value:
            return None
        # EXIF times carry no zone; the phone's local time is the best we know, stored as UTC-naive→UTC.
        return datetime.strptime(str(value).strip("\x00"), "%Y:%m:%d %H:%M:%S").replace(tzinfo=timezone.utc)
    except (ValueError, KeyError, AttributeError, TypeError):
        return None
