"""The Flask extensions, one instance each, bound to an app by `app.create_app` (their ``init_app``).

Importing this module builds no app and touches no configuration. The SQLAlchemy handle is `followup.db.db`,
next to the declarative base and naming convention it is made with.
"""
from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_smorest import Api
from flask_wtf.csrf import CSRFProtect

from followup.errors import ErrorSchema

csrf = CSRFProtect()
migrate = Migrate()

login_manager = LoginManager()
login_manager.login_view = "web.login"
login_manager.session_protection = "strong"

#: Sign-in and upload limits (``LOGIN_RATE_LIMIT``, ``*_UPLOAD_RATE_LIMIT``); counters in ``RATELIMIT_STORAGE_URI``.
limiter = Limiter(key_func=get_remote_address, default_limits=[])


class ScarWatchApi(Api):
    """flask-smorest with the contract's error format, ``{"error": {"code", "message"}}``."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self):
        # Errors are answered by followup.errors for the whole app (JSON under /api and /twilio).
        pass


#: The JSON API under /api/v1 (`followup.api` registers its blueprints on it).
api = ScarWatchApi()
