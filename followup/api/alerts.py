"""The triage queue over the API."""
from __future__ import annotations

from flask import jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from followup import audit, queries
from followup.api.schemas import AlertPageSchema, AlertQuerySchema, AlertSchema, ResolveSchema
from followup.auth import api_user, roles_required
from followup.db import db
from followup.triage import alerts

blp = Blueprint("api_alerts", __name__, description="Triage alerts")


@blp.route("/alerts")
class Alerts(MethodView):
    @roles_required()
    @blp.arguments(AlertQuerySchema, location="query")
    @blp.response(200, AlertPageSchema)
    def get(self, query):
        """Alerts of the caller's clinic, most urgent first (priority, score, age); ``next`` pages on."""
        user = api_user()
        offset = alerts.decode_cursor(query["cursor"])
        rows = list(db.session.execute(
            queries.queue_query(user.clinic_id, query["status"]).offset(offset).limit(query["limit"] + 1)
        ).scalars())
        more = len(rows) > query["limit"]
        page = AlertPageSchema().dump(
            {"items": rows[: query["limit"]], "next": alerts.encode_cursor(offset + query["limit"]) if more else None})
        # Audited once the answer is built: the commit expires the rows, which must not load again one by one.
        audit.record("list_alerts", "clinic", user.clinic_id, user=user, count=len(page["items"]),
                     patients=[item["patient_id"] for item in page["items"]])
        return jsonify(page)


@blp.route("/alerts/<int:alert_id>/claim")
class ClaimAlert(MethodView):
    @roles_required("dermatologist")
    @blp.response(200, AlertSchema)
    def post(self, alert_id):
        """Claim an alert so colleagues do not work the same case."""
        user = api_user()
        return alerts.claim(alerts.alert_for(user, alert_id), user)


@blp.route("/alerts/<int:alert_id>/resolve")
class ResolveAlert(MethodView):
    @roles_required("dermatologist")
    @blp.arguments(ResolveSchema)
    @blp.response(200, AlertSchema)
    def post(self, body, alert_id):
        """Resolve an alert with an outcome (audited)."""
        user = api_user()
        return alerts.resolve(alerts.alert_for(user, alert_id), user, outcome=body["outcome"], note=body["note"])
