"""The clinic's staff accounts (admins): create accounts, (de)activate them, set a new password."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user

from followup import audit, queries
from followup.db import db
from followup.models import Clinic, User
from followup.models.accounts import ROLES
from followup.records import accounts
from followup.records.accounts import AccountError, create_user
from followup.web.common import staff_required

bp = Blueprint("users", __name__)


@bp.route("/users", methods=["GET", "POST"])
@staff_required("admin")
def users():
    errors: dict = {}
    if request.method == "POST":
        clinic = db.session.get(Clinic, current_user.clinic_id)
        try:
            user = create_user(clinic, email=request.form.get("email", ""), password=request.form.get("password", ""),
                               role=request.form.get("role", ""), name=request.form.get("name", "").strip())
        except AccountError as exc:
            db.session.rollback()
            errors["form"] = str(exc).capitalize() + "."
        else:
            audit.record("create_user", "user", user.id, commit=False)
            db.session.commit()
            flash(f"Account created for {user.email}.", "info")
            return redirect(url_for("users.users"), 303)
    return render_template("clinic/users.html", users=queries.clinic_users(current_user.clinic_id), roles=ROLES,
                           errors=errors, form=request.form), 400 if errors else 200


@bp.post("/users/<int:user_id>/active")
@staff_required("admin")
def set_active(user_id: int):
    user = db.session.get(User, user_id)
    if user is None or user.clinic_id != current_user.clinic_id:
        abort(404, f"User {user_id} doesn't exist.")
    if user.id == current_user.id:
        flash("You cannot deactivate your own account.", "error")
        return redirect(url_for("users.users"), 303)
    accounts.set_active(user, request.form.get("active") == "1", by=current_user._get_current_object())
    audit.record("activate_user" if user.active else "deactivate_user", "user", user.id, commit=False)
    db.session.commit()
    return redirect(url_for("users.users"), 303)


@bp.post("/users/<int:user_id>/password")
@staff_required("admin")
def set_user_password(user_id: int):
    """A new password for a colleague (forgotten, or possibly known to someone else): it signs them out
    everywhere and ends their API tokens."""
    user = db.session.get(User, user_id)
    if user is None or user.clinic_id != current_user.clinic_id:
        abort(404, f"User {user_id} doesn't exist.")
    try:
        accounts.set_password(user, request.form.get("password", ""))
    except AccountError as exc:
        db.session.rollback()
        flash(str(exc).capitalize() + ".", "error")
        return redirect(url_for("users.users"), 303)
    audit.record("set_password", "user", user.id, commit=False)
    db.session.commit()
    if user.id == current_user.id:
        login_user(user)  # this session carries the new version; the admin's other sessions end
    flash(f"New password set for {user.email}; their sessions and API tokens have ended.", "info")
    return redirect(url_for("users.users"), 303)
