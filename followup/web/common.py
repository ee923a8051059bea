"""What the staff pages share: role checks, private image responses, and the Jinja filters they use."""
from __future__ import annotations

import io
from datetime import date, datetime
from functools import lru_cache, wraps
from typing import Any, Callable, Optional

from flask import Flask, Response, abort, request
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user, login_required
from marshmallow import Schema, ValidationError
from PIL import Image

from followup.db import utcnow

THUMB_SIDE = 160

#: Highest page number a list honours: a 20-digit ?page= would overflow the database's integers (a 500)
#: instead of showing an empty page.
MAX_PAGE = 100_000


def staff_required(*roles: str) -> Callable:
    """A signed-in staff member, with one of ``roles`` when given (403 otherwise)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if roles and current_user.role not in roles:
                abort(403, f"This page needs the role {' or '.join(roles)}.")
            return view(*args, **kwargs)

        return wrapped

    return decorator


def passive(view: Callable) -> Callable:
    """A request a page makes by itself (auto-refresh): it must not extend the idle session timeout."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        request.environ["scarwatch.passive"] = True
        return view(*args, **kwargs)

    return wrapped


class IdleSessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions whose expiry moves on with each request a person makes, not with passive ones."""

    def should_set_cookie(self, app, session) -> bool:
        if request.environ.get("scarwatch.passive"):
            return session.modified
        return super().should_set_cookie(app, session)


def load_form(schema: type[Schema], values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A form's ``values`` loaded by the API's ``schema`` (the same rules and messages as the API): what it loads,
    and the messages by field (empty when all is well). A blank field counts as left out (its default, or the
    schema's message for a required field)."""
    values = {name: value.strip() if isinstance(value, str) else value for name, value in values.items()}
    values = {name: value for name, value in values.items() if value not in ("", None)}
    try:
        return schema().load(values), {}
    except ValidationError as exc:
        messages = exc.normalized_messages()
        return {}, {name: " ".join(map(str, text)) if isinstance(text, list) else str(text)
                    for name, text in messages.items()}


def private_image(data: bytes, mimetype: str = "image/jpeg") -> Response:
    """An image of a patient: never cached by browsers or proxies, never sniffed."""
    response = Response(data, mimetype=mimetype)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@lru_cache(maxsize=256)
def thumbnail(key: str, data_loader: Callable[[str], bytes], side: int = THUMB_SIDE) -> bytes:
    """A small JPEG of a stored image; keys are content hashes, so a cached thumbnail never goes stale."""
    image = Image.open(io.BytesIO(data_loader(key)))
    image.draft("RGB", (side, side))  # JPEG: decode at 1/2…1/8 scale, far faster than a full decode
    image = image.convert("RGB")
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


def ago(value: Optional[datetime], now: Optional[datetime] = None) -> str:
    """'5 min', '3 h', '4 days', '7 weeks' — how long ago, in a clinician's shorthand."""
    if value is None:
        return "—"
    seconds = max(0, int(((now or utcnow()) - value).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    days = seconds // 86400
    return f"{days} days" if days < 60 else f"{days // 7} weeks"


def since(value: Optional[date], today: Optional[date] = None) -> str:
    """Time since a date ('3 weeks', '4 months', '2 y 3 m'), e.g. since surgery."""
    if value is None:
        return "—"
    days = ((today or utcnow().date()) - value).days
    if days < 0:
        return "in the future"
    if days < 28:
        return f"{days} days"
    if days < 90:
        return f"{days // 7} weeks"
    months = round(days / 30.44)
    if months < 24:
        return f"{months} months"
    return f"{months // 12} y {months % 12} m"


def when(value: Optional[datetime]) -> str:
    return value.strftime("%d %b %Y %H:%M UTC") if value else "—"


def day(value: Optional[date | datetime]) -> str:
    return value.strftime("%d %b %Y") if value else "—"


def init_app(app: Flask) -> None:
    app.session_interface = IdleSessionInterface()
    app.add_template_filter(ago)
    app.add_template_filter(since)
    app.add_template_filter(when)
    app.add_template_filter(day)
