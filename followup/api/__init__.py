"""The JSON API under /api/v1 (flask-smorest: schemas validate input and generate the OpenAPI document)."""
from __future__ import annotations

from flask import Flask

from followup.api import alerts, audit, auth, patients, photos, users
from followup.extensions import api

API_PREFIX = "/api/v1"


def init_app(app: Flask) -> None:
    app.config.update(
        API_TITLE="Scar Watch API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
        },
    )
    api.init_app(app)
    for module in (auth, patients, photos, alerts, users, audit):
        api.register_blueprint(module.blp, url_prefix=API_PREFIX)
