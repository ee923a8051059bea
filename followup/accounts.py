"""Staff accounts."""
from __future__ import annotations

from typing import Optional

from sqlalchemy import select

from followup.auth import hash_password
from followup.db import db
from followup.models import Clinic, User
from followup.models.accounts import ROLES


class AccountError(ValueError):
    pass


def create_user(clinic: Clinic, *, email: str, password: str, role: str, name: str = "",
                phone: Optional[str] = None) -> User:
    email = email.strip().lower()
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 12:
        raise AccountError("password must have at least 12 characters")
    if db.session.execute(select(User.id).where(User.email == email)).first():
        raise AccountError(f"a user with e-mail {email} already exists")
    user = User(clinic_id=clinic.id, email=email, password_hash=hash_password(password), role=role,
                name=name, phone=phone)
    db.session.add(user)
    db.session.flush()
    return user
