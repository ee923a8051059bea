"""POST /api/v1/auth/token — trade an e-mail and password for a bearer token; DELETE ends it."""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from followup import audit
from followup.api.schemas import TokenRequestSchema, TokenSchema
from followup.auth import authenticate, bearer_token, issue_token
from followup.db import db, utcnow
from followup.extensions import limiter

blp = Blueprint("api_auth", __name__, description="Authentication")


@blp.route("/auth/token")
class TokenResource(MethodView):
    decorators = [limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])]

    @blp.arguments(TokenRequestSchema)
    @blp.response(200, TokenSchema)
    @blp.doc(security=[])
    def post(self, body):
        """Get a bearer token (valid API_TOKEN_HOURS hours)."""
        user = authenticate(body["email"], body["password"])
        if user is None:
            audit.sign_in_failed(body["email"], via="api")
            abort(401, message="Wrong e-mail or password.")
        token, row = issue_token(user, current_app.config["API_TOKEN_HOURS"])
        audit.record("issue_token", "api_token", row.id, user=user, expires_at=row.expires_at.isoformat())
        return {"token": token, "expires_at": row.expires_at}

    @blp.response(204)
    @blp.doc(security=[{"bearerAuth": []}])  # stated, not inherited: the POST beside it needs no token
    def delete(self):
        """End the calling bearer token: refused from now on (the client signs out)."""
        row = bearer_token()
        if row is None:
            abort(401, message="Send the token to end: Authorization: Bearer TOKEN.")
        row.revoked_at = utcnow()
        audit.record("revoke_token", "api_token", row.id, user=row.user, commit=False)
        db.session.commit()
