"""The audit trail of the caller's clinic, by patient and by user (admins only): a page at a time, or CSV."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from followup import audit
from followup.api.schemas import AuditPageQuerySchema, AuditPageSchema, AuditQuerySchema
from followup.auth import api_user, roles_required

blp = Blueprint("api_audit", __name__, description="Audit trail (admin)")


def _trail(query: dict, action: str):
    return audit.read_trail(api_user(), action, **{k: query[k] for k in ("patient_id", "user_id", "since", "until")})


@blp.route("/audit")
class AuditTrail(MethodView):
    @roles_required("admin")
    @blp.arguments(AuditPageQuerySchema, location="query")
    @blp.response(200, AuditPageSchema)
    def get(self, query):
        """Who did what, newest first: events about ``patient_id`` (who saw this patient) and/or by ``user_id``;
        neither: everything the clinic's staff did. ``next`` pages on."""
        items, cursor = audit.page(_trail(query, "view_audit"), cursor=query["cursor"], limit=query["limit"])
        return {"items": items, "next": cursor}


@blp.route("/audit/export")
class AuditExport(MethodView):
    @roles_required("admin")
    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, content_type="text/csv")
    def get(self, query):
        """The same trail as CSV (every matching event, newest first)."""
        return audit.csv_response(_trail(query, "export_audit"))
