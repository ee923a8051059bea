"""The patient's upload page, reached from the SMS link. No login; the link is the only key.

Every response here is ``noindex``, sends no referrer and is not cached: the URL carries the link's token.
The patient only ever sees whether the photo could be used (and why not), never a finding. Every error is
answered with the upload form and what to do (`error_page`), never a bare "Bad Request"; uploads are rate
limited per link and per address. No CSRF token: the link's token is the credential (see app.py).
"""
from __future__ import annotations

import hashlib

from flask import Blueprint, Response, current_app, jsonify, make_response, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from werkzeug.exceptions import HTTPException

from followup import audit
from followup.db import db, utcnow
from followup.extensions import limiter
from followup.intake.cleaning import IntakeError
from followup.intake.photos import baseline_of, receive_photo
from followup.models import Clinic, Photo, Site, UploadLink
from followup.models.photos import PhotoKind, PhotoStatus
from followup.records import links
from followup.storage import storage
from followup.web.common import thumbnail
from recurrence.encoding import ANSWER_KEYS

bp = Blueprint("patient", __name__, url_prefix="/u")

ANSWER_VALUES = {"yes": True, "no": False, "unsure": None, "": None}
QUESTIONS = {
    "grew": "Has it grown?", "itch": "Does it itch?", "bleed": "Has it bled?", "hurt": "Does it hurt?",
    "changed": "Has it changed in any other way?", "elevation": "Is it raised above the skin?",
}
GUIDE_SIDE = 1024
# What the patient is told while the photo is checked, and after.
STATE_OF = {PhotoStatus.QUEUED: "checking", PhotoStatus.PROCESSING: "checking", PhotoStatus.DONE: "received",
            PhotoStatus.FAILED: "received", PhotoStatus.REJECTED: "retake"}


class UploadForm(FlaskForm):
    class Meta:
        csrf = False  # the link's token in the URL is the credential, no cookie is

    photo = FileField("Photo", validators=[FileRequired("Choose or take a photo first.")])


def _private(response):
    # Link pages carry a secret in the URL: keep them out of search engines, referrers and caches.
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _problem(problem: links.LinkProblem):
    status = 410 if problem.reason in ("expired", "revoked", "used") else 404
    clinic = None
    if problem.link is not None:
        site = db.session.get(Site, problem.link.site_id)
        clinic = db.session.get(Clinic, site.patient.clinic_id)
    return _private(make_response(render_template("patient/link_problem.html", reason=problem.reason,
                                                  clinic=clinic), status))


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def _link_key() -> str:
    # Hashed: the limiter's storage (memory or Redis) must not hold working links.
    return "link:" + hashlib.sha256(request.view_args["token"].encode()).hexdigest()


@bp.route("/<token>", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LINK_UPLOAD_RATE_LIMIT"], key_func=_link_key, methods=["POST"])
@limiter.limit(lambda: current_app.config["ADDRESS_UPLOAD_RATE_LIMIT"], methods=["POST"])
def upload(token: str):
    try:
        link = links.resolve_link(token)
    except links.LinkProblem as problem:
        return _problem(problem)
    form = UploadForm()
    status = 200
    if form.validate_on_submit():
        answers = {f: ANSWER_VALUES.get(request.form.get(f, ""), None) for f in ANSWER_KEYS}
        try:
            photo = receive_photo(db.session.get(Site, link.site_id), form.photo.data.read(), kind=PhotoKind.FOLLOWUP,
                                  answers=answers, link=link)
        except IntakeError as exc:
            form.photo.errors = [exc.message]
            status = exc.status
        except links.LinkProblem as problem:  # the link's last upload went in meanwhile
            return _problem(problem)
        else:
            audit.record("patient_upload", "photo", photo.id, actor=f"link:{link.id}")
            target = url_for("patient.sent", token=token, photo_id=photo.id)
            if _wants_json():
                return _private(jsonify({"status_url": target, "state": STATE_OF[photo.status]}))
            return _private(redirect(target, 303))
    elif request.method == "POST":
        status = 400
    if request.method == "POST" and _wants_json():
        errors = form.photo.errors or [e for errs in form.errors.values() for e in errs] or ["Please try again."]
        return _private(make_response(jsonify({"errors": list(errors)}), status))
    return _upload_page(link, token, form, status, answers=request.form)


def _upload_page(link: UploadLink, token: str, form: UploadForm, status: int, *, answers) -> Response:
    site = db.session.get(Site, link.site_id)
    clinic = db.session.get(Clinic, site.patient.clinic_id)
    return _private(make_response(render_template(
        "patient/upload.html", form=form, clinic=clinic, site=site, token=token, questions=QUESTIONS,
        answers=answers, has_guide=baseline_of(site.id) is not None), status))


def _error_message(code: int) -> str:
    """What a patient reads when a request on their page fails: what happened and what to do."""
    if code == 413:
        return (f"This photo is too large to send (the limit is {current_app.config['MAX_UPLOAD_MB']:g} MB). "
                "Please take it again, or choose a smaller one.")
    if code == 415:
        return "This file is not a photo we can read. Please take the photo again with your phone's camera."
    if code == 429:
        return ("You have tried many times in a short while. Please wait a little (up to an hour), "
                "then send the photo again.")
    if code in (404, 405):
        return "That page does not exist. You can send your photo here."
    if code >= 500:
        return "Sorry, something went wrong on our side and your photo was not sent. Please try again later."
    return "The photo did not arrive. Please send it again."


def error_page(error: HTTPException):
    """Any error under /u/: the upload form again with what to do, or the link's own page if it is dead."""
    message = _error_message(error.code or 500)
    if _wants_json():
        return _private(make_response(jsonify({"errors": [message]}), error.code))
    if (error.code or 500) >= 500:
        db.session.rollback()  # the failed request's transaction must not break the page that explains it
    token = (request.view_args or {}).get("token") or request.path.split("/")[2]
    try:
        link = links.resolve_link(token)
    except links.LinkProblem as problem:
        return _problem(problem)
    form = UploadForm(formdata=None)  # never the request's body: reading it may be what failed (413)
    form.photo.errors = [message]
    return _upload_page(link, token, form, error.code, answers={})


@bp.get("/<token>/guide.jpg")
def guide(token: str):
    """The site's baseline photo, smaller, for the patient to line the new photo up with."""
    try:
        link = links.resolve_link(token)
    except links.LinkProblem as problem:
        return _problem(problem)
    baseline = baseline_of(link.site_id)
    if baseline is None:
        return _private(make_response("No guide photo yet.", 404))
    audit.record("patient_view_guide", "photo", baseline.id, actor=f"link:{link.id}")
    response = make_response(thumbnail(baseline.storage_key, storage().get, GUIDE_SIDE))
    response.mimetype = "image/jpeg"
    response = _private(response)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _photo_of_link(token: str, photo_id: int):
    """The link (even once used up by this very photo) and its photo; None when they do not belong together."""
    try:
        link = links.resolve_link(token)
    except links.LinkProblem as problem:
        if problem.reason == "invalid" or problem.link is None:
            return None, None
        link = problem.link
    photo = db.session.get(Photo, photo_id)
    if photo is None or photo.upload_link_id != link.id:
        return link, None
    return link, photo


def retake_reasons(photo: Photo) -> list[str]:
    """The quality check's patient-facing reasons for a rejected photo (never any clinical finding)."""
    reasons: list[str] = []
    for analysis in photo.analyses:
        reasons.extend(str(r) for r in (analysis.quality or {}).get("reasons") or [])
    # The pipeline also puts the reasons, with any it adds (e.g. "could not match"), in status_detail.
    reasons.extend(part.strip() for part in (photo.status_detail or "").split(";") if part.strip())
    unique = list(dict.fromkeys(reasons))
    return unique or ["the photo could not be checked — please take it again"]


def _link_open(link: UploadLink) -> bool:
    """Whether the link still takes a photo (for the 'take it again' button)."""
    return (link.revoked_at is None and link.used_at is None and link.uploads < links.MAX_UPLOADS
            and link.expires_at > utcnow())


@bp.get("/<token>/sent/<int:photo_id>")
def sent(token: str, photo_id: int):
    """After an upload: still checking, received, or 'please retake because …'."""
    link, photo = _photo_of_link(token, photo_id)
    if link is None or photo is None:
        return _private(make_response(render_template("patient/link_problem.html", reason="invalid",
                                                      clinic=None), 404))
    site = db.session.get(Site, link.site_id)
    clinic = db.session.get(Clinic, site.patient.clinic_id)
    state = STATE_OF.get(photo.status, "received")
    reasons = retake_reasons(photo) if state == "retake" else []
    if request.args.get("format") == "json":
        return _private(jsonify({"state": state, "reasons": reasons}))
    response = make_response(render_template(
        "patient/received.html", clinic=clinic, site=site, state=state, reasons=reasons, token=token,
        photo=photo, can_retake=_link_open(link)))
    if state == "checking":
        response.headers["Refresh"] = "5"  # without JavaScript the page looks again by itself
    return _private(response)

