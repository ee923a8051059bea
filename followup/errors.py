"""One error handler for the whole app: JSON for the API and webhooks, the patient's own kind page on the
patient's pages, plain pages elsewhere."""
from __future__ import annotations

import errno
import logging
from typing import Callable

import marshmallow as ma
from botocore.exceptions import ConnectionError as S3Unreachable
from botocore.exceptions import ReadTimeoutError
from flask import Flask, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable, default_exceptions

from followup.records.links import hide_tokens

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input",
    429: "too_many_requests", 500: "internal_error", 503: "service_unavailable",
}


class DomainError(Exception):
    """A service refused a change, saying why; ``status`` is the HTTP answer it becomes when no view handles it
    (the API's ``{"error": …}``; a page may flash the message instead)."""

    status = 422

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class ErrorDetailSchema(ma.Schema):
    code = ma.fields.String(metadata={"description": "Machine-readable error code"})
    message = ma.fields.String(metadata={"description": "What went wrong, naming the field"})
    fields = ma.fields.Dict(metadata={"description": "Validation messages per field, when any"})


class ErrorSchema(ma.Schema):
    error = ma.fields.Nested(ErrorDetailSchema)


def _validation_message(messages) -> str:
    """webargs' nested ``{"json": {"phone": ["..."]}}`` → ``"phone: ..."``, naming each field."""
    parts = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, path + [str(key)])
        elif isinstance(node, list) and all(isinstance(v, str) for v in node):
            parts.append(f"{'.'.join(path) or 'body'}: {' '.join(node)}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, path + [str(i)])
        else:
            parts.append(f"{'.'.join(path) or 'body'}: {node}")

    locations = ("json", "form", "files", "query", "headers", "view_args")
    if isinstance(messages, dict) and set(messages) <= set(locations):
        for value in messages.values():
            walk(value, [])
    else:
        walk(messages, [])
    return "; ".join(parts)


def json_error_payload(error: HTTPException):
    data = getattr(error, "data", None) or {}
    code = data.get("code") or _CODES.get(error.code, "error")
    if "messages" in data:
        message = _validation_message(data["messages"])
        fields = data["messages"]
    else:
        message = data.get("message") or error.description or error.name
        fields = None
    body = {"error": {"code": code, "message": message}}
    if fields is not None:
        body["error"]["fields"] = fields
    response = jsonify(body)
    response.status_code = error.code or 500
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    if error.code == 429 and getattr(error, "retry_after", None):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _wants_json() -> bool:
    return (request.path.startswith(("/api/", "/twilio/", "/healthz"))
            or request.accept_mimetypes.best == "application/json")


def handle_http_exception(error: HTTPException):
    for prefix, page in current_app.extensions["error_pages"].items():
        if request.path.startswith(prefix):
            return page(error)
    if _wants_json():
        return json_error_payload(error)
    return render_template("error.html", error=error), error.code


def handle_domain_error(error: DomainError):
    return handle_http_exception(default_exceptions[error.status](description=str(error)))


def handle_unexpected(error: Exception):
    log.exception("unhandled error on %s %s", request.method, hide_tokens(request.path))  # no working link in a log
    return handle_http_exception(InternalServerError())


def handle_storage_outage(error: Exception):
    """The photo store cannot be reached or is full: 503 with Retry-After (nothing was recorded), not a 500."""
    if isinstance(error, OSError) and error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return handle_unexpected(error)
    log.error("photo storage unavailable on %s %s: %s", request.method, hide_tokens(request.path), error)
    unavailable = ServiceUnavailable("The photo store is unavailable; nothing was saved. Please try again later.")
    unavailable.retry_after = 60
    response = handle_http_exception(unavailable)
    response = current_app.make_response(response)
    response.headers["Retry-After"] = "60"
    return response


def own_error_pages(app: Flask, prefix: str, page: Callable[[HTTPException], ResponseReturnValue]) -> None:
    """Let the pages under ``prefix`` answer every error themselves (routing errors included)."""
    app.extensions["error_pages"][prefix] = page


def init_app(app: Flask) -> None:
    app.extensions["error_pages"] = {}
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(Exception, handle_unexpected)
    for outage in (S3Unreachable, ReadTimeoutError, OSError):  # OSError: only a full disk (ENOSPC, EDQUOT)
        app.register_error_handler(outage, handle_storage_outage)
