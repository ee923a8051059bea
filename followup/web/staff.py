"""Staff sign-in, sign-out and home (the triage queue)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from followup import audit
from followup.auth import authenticate, end_web_sessions
from followup.db import db
from followup.extensions import limiter
from followup.web import triage

bp = Blueprint("web", __name__)


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect would let a phishing link borrow our login page.
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("web.home")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is not None:
            session.clear()
            login_user(user)
            session.permanent = True  # the lifetime is the idle timeout
            audit.record("login", "user", user.id, user=user)
            return redirect(_safe_next(request.args.get("next")))
        audit.sign_in_failed(form.email.data, via="web")
        flash("Wrong e-mail or password.", "error")
        return render_template("login.html", form=form), 401
    return render_template("login.html", form=form), 400 if form.errors else 200


@bp.post("/logout")
@login_required
def logout():
    # Server-side: a copy of this cookie (another tab, a stolen one) no longer signs anyone in.
    end_web_sessions(current_user._get_current_object())
    db.session.commit()
    logout_user()
    session.clear()
    return redirect(url_for("web.login"))


@bp.get("/")
def home():
    """Staff land on the triage queue."""
    if not current_user.is_authenticated:
        return redirect(url_for("web.login"))
    return triage.queue()
