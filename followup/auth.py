"""Who is asking: web sessions (Flask-Login), API bearer tokens, and role checks."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from functools import wraps
from typing import Callable, Optional

from flask import Flask, abort, current_app, request
from flask_login import current_user
from sqlalchemy import select, update
from werkzeug.security import check_password_hash, generate_password_hash

from followup.db import db, utcnow
from followup.extensions import limiter, login_manager
from followup.models import ApiToken, User

# A hash to compare against when the e-mail is unknown, so timing does not reveal which accounts exist.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def init_app(app: Flask) -> None:
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    login_manager.init_app(app)
    limiter.init_app(app)


@login_manager.user_loader
def _load_user(session_id: str) -> Optional[User]:
    """The session's user while the version in the cookie is the user's current one (see `end_web_sessions`)."""
    user_id, _, version = session_id.partition(":")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not (user_id.isascii() and user_id.isdigit() and version.isascii() and version.isdigit()):
        return None  # a cookie from before session versions: sign in again
    user = db.session.get(User, int(user_id))
    if user is None or user.session_version != int(version):
        return None
    return user


def end_web_sessions(user: User) -> None:
    """End every web session of ``user``, on every device and every copy of the cookie (sign-out, a new
    password, deactivation): the cookies name the old version. Part of the caller's transaction.
    Incremented in SQL, not in Python: two at once (a sign-out and a new password) both count."""
    db.session.execute(
        update(User).where(User.id == user.id).values(session_version=User.session_version + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(user, ["session_version"])  # the caller may sign the user in again with the new version


def revoke_tokens(user: User) -> None:
    """Revoke every API token of ``user`` (a new password, deactivation). Part of the caller's transaction."""
    db.session.execute(
        update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow()).execution_options(synchronize_session=False)
    )


def hash_password(password: str) -> str:
    """scrypt, a memory-hard KDF (werkzeug's default cost; tests lower it with PASSWORD_HASH_METHOD)."""
    return generate_password_hash(password, method=current_app.config.get("PASSWORD_HASH_METHOD", "scrypt"))


def authenticate(email: str, password: str) -> Optional[User]:
    user = db.session.execute(select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password) or not user.active:
        return None
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: User, hours: int) -> tuple[str, ApiToken]:
    token = secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, token_hash=_token_hash(token), expires_at=utcnow() + timedelta(hours=hours))
    db.session.add(row)
    db.session.commit()
    return token, row


def bearer_token() -> Optional[ApiToken]:
    """The request's ``Authorization: Bearer`` token if it is valid: not revoked, unexpired, of an active user."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    row = db.session.execute(
        select(ApiToken).where(ApiToken.token_hash == _token_hash(token.strip()))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow() or not row.user.active:
        return None
    return row


def bearer_user() -> Optional[User]:
    """The user behind a valid ``Authorization: Bearer`` token, else None."""
    row = bearer_token()
    return row.user if row else None


def api_user() -> User:
    """The caller of an API route: a bearer token, else a logged-in web session (for the web pages' fetches)."""
    # Cached per request (not in g: an app context can outlive one request, as in tests).
    if "scarwatch.api_user" not in request.environ:
        user = bearer_user()
        if user is None and current_user.is_authenticated:
            user = current_user._get_current_object()
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                # A cookie is ambient authority: the web pages' own requests send the CSRF token header.
                current_app.extensions["csrf"].protect()
        request.environ["scarwatch.api_user"] = user
    user = request.environ["scarwatch.api_user"]
    if user is None:
        abort(401, "Authentication required: send Authorization: Bearer TOKEN (POST /api/v1/auth/token).")
    return user


def roles_required(*roles: str) -> Callable:
    """Allow API callers with one of ``roles`` (any staff role when none are given)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            user = api_user()
            if roles and user.role not in roles:
                abort(403, f"This action needs the role {' or '.join(roles)}.")
            return view(*args, **kwargs)

        return wrapped

    return decorator


def session_idle_timeout(app: Flask) -> None:
    app.permanent_session_lifetime = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"])
    # Every request pushes the expiry forward, so the lifetime is an idle timeout.
    app.config["SESSION_REFRESH_EACH_REQUEST"] = True
