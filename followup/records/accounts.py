"""Staff accounts."""
from __future__ import annotations

from typing import Optional

from sqlalchemy import select

from followup.auth import end_web_sessions, hash_password, revoke_tokens
from followup.db import db
from followup.errors import DomainError
from followup.models import Clinic, User
from followup.models.accounts import ROLES
from followup.records.patients import normalise_e164
from followup.triage import alerts

#: The longest e-mail address there can be (RFC 5321 path limit), and the column's size.
MAX_EMAIL = 254
MAX_NAME = 200
MIN_PASSWORD = 12


class AccountError(DomainError, ValueError):
    """An account that cannot be created or changed as asked: 422, or 409 for an e-mail already taken."""


def create_user(clinic: Clinic, *, email: str, password: str, role: str, name: str = "",
                phone: Optional[str] = None) -> User:
    email = email.strip().lower()
    if not email or len(email) > MAX_EMAIL:
        raise AccountError(f"an e-mail address has 1 to {MAX_EMAIL} characters")
    if len(name) > MAX_NAME:
        raise AccountError(f"a name has at most {MAX_NAME} characters")
    if phone is not None:
        # Urgent texts go to this number: stored as typed ("+44 7700 900123") every one would fail.
        try:
            phone = normalise_e164(phone)
        except ValueError as exc:
            raise AccountError(f"the phone number {exc}") from None
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    _check_password(password)
    if db.session.execute(select(User.id).where(User.email == email)).first():
        raise AccountError(f"a user with e-mail {email} already exists", status=409)
    user = User(clinic_id=clinic.id, email=email, password_hash=hash_password(password), role=role,
                name=name, phone=phone)
    db.session.add(user)
    db.session.flush()
    return user


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password must have at least {MIN_PASSWORD} characters")


def set_password(user: User, password: str) -> None:
    """A new password ends what the old one opened: every web session and every API token of the user.
    Part of the caller's transaction."""
    _check_password(password)
    user.password_hash = hash_password(password)
    end_web_sessions(user)
    revoke_tokens(user)


def set_active(user: User, active: bool, *, by: User) -> None:
    """(De)activate an account. Someone who leaves keeps nothing: sessions and tokens end, and their claimed
    alerts go back to the queue (audited as done by ``by``). Part of the caller's transaction."""
    user.active = active
    if not active:
        end_web_sessions(user)
        revoke_tokens(user)
        alerts.release_claims_of(user, by=by)
