"""FHIR R4 at /fhir/r4: reads, searches and ``$everything`` of what Scar Watch holds, and enrolment by a
transaction Bundle — the API's bearer tokens, clinic scoping (another clinic's resource is a 404) and audit."""
from __future__ import annotations

from flask import Blueprint, Flask, request

from followup import audit
from followup.auth import api_user
from followup.db import MAX_ID
from followup.errors import own_error_pages
from followup.fhir import enrol, search
from followup.fhir.capability import capability_statement
from followup.fhir.common import FHIR_PREFIX, base_url
from followup.fhir.errors import FhirError, fhir_response, from_fhir_error, from_http_exception

bp = Blueprint("fhir", __name__, url_prefix=FHIR_PREFIX)
bp.register_error_handler(FhirError, from_fhir_error)


def init_app(app: Flask) -> None:
    """Register the blueprint; every error under /fhir/r4 (routing and auth included) is an OperationOutcome."""
    app.register_blueprint(bp)
    own_error_pages(app, FHIR_PREFIX, from_http_exception)


def _audit(action: str, record_type: str, record_id, user, found: search.Found, **detail) -> None:
    audit.record(action, record_type, record_id, user=user, patients=sorted(found.patients), **detail)


@bp.get("/metadata")
def metadata():
    """What this server serves; public, as FHIR clients read it before they authenticate."""
    return fhir_response(capability_statement())


@bp.get("/<resource_type>/<resource_id>")
def read(resource_type: str, resource_id: str):
    user = api_user()
    handler = search.handler_for(resource_type)
    found = search.read(handler, user.clinic_id, resource_id)
    key = int(resource_id.split("-")[0])
    # (A text's key may pass the id columns' range: it is then in the detail only.)
    _audit("fhir_read", resource_type, key if key <= MAX_ID else None, user, found,
           resource=f"{resource_type}/{resource_id}")
    return fhir_response(found.resources[0])


@bp.get("/<resource_type>")
def search_type(resource_type: str):
    user = api_user()
    handler = search.handler_for(resource_type)
    found = search.search(handler, user.clinic_id, request.args)
    self_url = search.page_url(resource_type, request.args, request.args.get("_cursor"))
    next_url = search.page_url(resource_type, request.args, found.next_cursor) if found.next_cursor else None
    _audit("fhir_search", "clinic", user.clinic_id, user, found, resource_type=resource_type,
           query=request.query_string.decode(errors="replace")[:500], count=len(found.resources))
    return fhir_response(search.bundle("searchset", found, self_url=self_url, next_url=next_url))


@bp.get("/Patient/<int:patient_id>/$everything")
def everything(patient_id: int):
    user = api_user()
    found = search.everything(user.clinic_id, patient_id)
    _audit("fhir_everything", "patient", patient_id, user, found, count=len(found.resources))
    return fhir_response(search.bundle("searchset", found,
                                       self_url=f"{base_url()}/Patient/{patient_id}/$everything"))


@bp.post("")
def transaction():
    """Enrol from a transaction Bundle (Patient + Condition [+ Procedure])."""
    user = api_user()
    enrolment = enrol.parse(request.get_data(cache=False))
    entries = enrol.enrol(user, enrolment)
    return fhir_response({"resourceType": "Bundle", "type": "transaction-response", "entry": entries})
