"""The printable reference sticker (issue 15): ``GET /reference-sticker.pdf`` (an A4 sheet at true size) and
``GET /reference-sticker.svg`` (one sticker). No login: it holds no patient data, and a patient may print
their own. The design is :mod:`registration.sticker`'s."""
from __future__ import annotations

from functools import lru_cache

from flask import Blueprint, Response

from registration import sticker

bp = Blueprint("sticker", __name__)


@lru_cache(maxsize=1)
def _pdf() -> bytes:
    return sticker.sticker_pdf()


@lru_cache(maxsize=1)
def _svg() -> bytes:
    return sticker.sticker_svg().encode()


def _file(data: bytes, mimetype: str, name: str) -> Response:
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'inline; filename="{name}"'
    response.headers["Cache-Control"] = "public, max-age=86400"  # the same for everyone, no patient data
    return response


@bp.get("/reference-sticker.pdf")
def sticker_pdf():
    return _file(_pdf(), "application/pdf", "scar-watch-reference-stickers.pdf")


@bp.get("/reference-sticker.svg")
def sticker_svg():
    return _file(_svg(), "image/svg+xml", "scar-watch-reference-sticker.svg")
