"""FHIR's error answer: an OperationOutcome naming what failed (``expression``: the element's path)."""
from __future__ import annotations

from typing import Optional

from flask import Response, json
from werkzeug.exceptions import HTTPException

FHIR_JSON = "application/fhir+json"

# HTTP status → the OperationOutcome issue code, for errors that arise outside this package (auth, routing).
_ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                409: "conflict", 413: "too-costly", 415: "not-supported", 429: "throttled"}


class FhirError(Exception):
    """A request the FHIR API refuses; answered as an OperationOutcome with ``status``."""

    def __init__(self, status: int, message: str, *, code: str = "invalid", expression: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.code, self.expression = status, message, code, expression


def outcome(status: int, message: str, *, code: str, expression: Optional[str] = None) -> Response:
    issue = {"severity": "error", "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = [expression]
    return fhir_response({"resourceType": "OperationOutcome", "issue": [issue]}, status)


def fhir_response(resource: dict, status: int = 200, headers: Optional[dict] = None) -> Response:
    response = Response(json.dumps(resource), status=status, mimetype=FHIR_JSON, headers=headers)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def from_fhir_error(error: FhirError) -> Response:
    return outcome(error.status, error.message, code=error.code, expression=error.expression)


def from_http_exception(error: HTTPException) -> Response:
    """Every other error under /fhir/r4 (a missing token, an unknown route, a body too large, a crash)."""
    status = error.code or 500
    return outcome(status, error.description or error.name, code=_ISSUE_CODES.get(status, "exception"))
