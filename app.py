"""Scar Watch application factory: ``flask --app app …`` and ``gunicorn 'app:create_app()'``."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

from flask import Flask
from sqlalchemy import text
from werkzeug.routing import IntegerConverter

from followup import api, auth, cli, errors, fhir, security, storage
from followup.analysis import celery_app, jobs
from followup.analysis.processing import process_photo
from followup.config import from_environment, sqlalchemy_url
from followup.db import MAX_ID, db
from followup.extensions import csrf, migrate
from followup.outreach import outbox, scheduler, texts
from followup.outreach.sweep import deliver_outbox
from followup.records import links
from followup.web import audit_trail, clinic, common, patient, staff, sticker, triage, twilio, users


class BoundedInt(IntegerConverter):
    """Ids fit the id columns: a larger number in a URL is a 404, not a database overflow."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def create_app(test_config: Optional[Mapping[str, Any]] = None) -> Flask:
    """Build the app: settings from the environment, then ``test_config`` on top (tests only)."""
    app = Flask("followup", instance_path=str(Path(__file__).resolve().parent / "instance"),
                instance_relative_config=True)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(from_environment(app.instance_path))
    if test_config:
        app.config.from_mapping(test_config)
    _derived_settings(app)
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    links.hide_tokens_in_access_logs()

    app.url_map.converters["int"] = BoundedInt
    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent / "migrations"),
                     render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    auth.init_app(app)
    storage.init_app(app)
    jobs.init_app(app, job=process_photo)
    celery_app.init_app(app, tasks={celery_app.ANALYZE_PHOTO: jobs.run_photo_job,
                                    celery_app.DELIVER_OUTBOX: deliver_outbox})
    errors.init_app(app)
    security.init_app(app)

    api.init_app(app)
    for name, blueprint in app.blueprints.items():
        if name.startswith("api_"):
            # Bearer tokens carry no ambient authority; a cookie-authenticated API call is checked in auth.api_user.
            csrf.exempt(blueprint)
    # FHIR: bearer tokens like the API (a cookie-authenticated call is checked in auth.api_user).
    fhir.init_app(app)
    csrf.exempt(fhir.bp)
    common.init_app(app)
    for module in (staff, triage, clinic, users, patient, audit_trail, sticker):
        app.register_blueprint(module.bp)
    # The patient's pages: the link's token in the URL is the only credential and no cookie authenticates
    # anyone there, so a forged cross-site request has no ambient authority to borrow and CSRF protection adds
    # nothing; its session-bound token made every upload from a page open over 30 minutes a bare 400.
    csrf.exempt(patient.bp)
    errors.own_error_pages(app, f"{patient.bp.url_prefix}/", patient.error_page)
    cli.init_app(app)
    _init_sms(app)
    _behind_proxy(app)

    @app.get("/healthz")
    def healthz():
        db.session.execute(text("SELECT 1"))
        return {"status": "ok"}

    return app


def _init_sms(app: Flask) -> None:
    """SMS transport, reminder texts, the scheduler and Twilio's webhooks (signed, so exempt from CSRF)."""
    outbox.init_app(app)
    texts.init_app(app)
    scheduler.init_app(app)
    app.register_blueprint(twilio.bp)
    csrf.exempt(twilio.bp)


def _behind_proxy(app: Flask) -> None:
    """Trust ``X-Forwarded-*`` from ``PROXY_FIX_HOPS`` reverse proxies (0: none). Twilio signatures are checked
    against PUBLIC_BASE_URL whatever the proxy says, never against the URL of the request as it arrived."""
    hops = app.config["PROXY_FIX_HOPS"]
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops)


def _derived_settings(app: Flask) -> None:
    config = app.config
    config["SQLALCHEMY_DATABASE_URI"] = sqlalchemy_url(config["DATABASE_URL"])
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    config["MAX_CONTENT_LENGTH"] = int(config["MAX_UPLOAD_MB"] * 1024 * 1024)
    secure = config["PUBLIC_BASE_URL"].startswith("https://")
    config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_SECURE=secure, REMEMBER_COOKIE_HTTPONLY=True, WTF_CSRF_TIME_LIMIT=None,
    )
    auth.session_idle_timeout(app)
