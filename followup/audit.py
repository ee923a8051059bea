"""Audit trail: every read of a patient's record or photo, every export and every resolve is written here."""
from __future__ import annotations

from typing import Any, Optional

from flask import has_request_context, request
from flask_login import current_user

from followup.db import db
from followup.models import AuditEvent, User


def record(action: str, record_type: str, record_id: Optional[int], *, user: Optional[User] = None,
           actor: Optional[str] = None, commit: bool = True, **detail: Any) -> None:
    """Add an audit event; ``user`` defaults to the logged-in web user."""
    if user is None and has_request_context() and current_user and current_user.is_authenticated:
        user = current_user._get_current_object()
    ip = request.remote_addr if has_request_context() else None
    db.session.add(AuditEvent(
        user_id=user.id if user else None,
        actor=actor or (f"user:{user.id}" if user else "system"),
        action=action, record_type=record_type, record_id=record_id, ip=ip, detail=detail,
    ))
    if commit:
        db.session.commit()
