"""The audit trail page for admins: who saw a patient, what a user did, and its CSV export."""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for
from flask_login import current_user
from marshmallow import ValidationError

from followup import audit, queries
from followup.api.schemas import AuditPageQuerySchema
from followup.web.common import staff_required

bp = Blueprint("audit_trail", __name__)

PAGE_SIZE = 100
FILTERS = ("patient_id", "user_id", "since", "until")


def _filters():
    """The form's filters (the API's rules), or the messages that say what is wrong with them."""
    asked = {k: v for k, v in request.args.items() if k in (*FILTERS, "cursor") and v.strip()}
    try:
        return AuditPageQuerySchema().load({**asked, "limit": PAGE_SIZE}), {}, asked
    except ValidationError as exc:
        return None, {k: " ".join(v) for k, v in exc.messages.items()}, asked


@bp.get("/audit")
@staff_required("admin")
def trail():
    query, errors, asked = _filters()
    items, cursor = [], None
    if query is not None:
        stmt = audit.read_trail(current_user, "view_audit", **{k: query[k] for k in FILTERS})
        items, cursor = audit.page(stmt, cursor=query["cursor"], limit=PAGE_SIZE)
    users = queries.clinic_users(current_user.clinic_id, by_name=True)
    filters = {k: v for k, v in asked.items() if k != "cursor"}
    html = render_template("clinic/audit.html", items=items, users=users, asked=asked, errors=errors,
                           next_url=url_for("audit_trail.trail", **filters, cursor=cursor) if cursor else None,
                           csv_url=url_for("audit_trail.export", **filters))
    return html, 400 if errors else 200


@bp.get("/audit.csv")
@staff_required("admin")
def export():
    query, errors, _asked = _filters()
    if query is None:
        abort(400, "Check the filters: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    return audit.csv_response(audit.read_trail(current_user, "export_audit", **{k: query[k] for k in FILTERS}))
