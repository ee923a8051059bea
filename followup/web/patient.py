"""The patient's upload page, reached from the SMS link. No login; the link is the only key."""
from __future__ import annotations

from flask import Blueprint, make_response, render_template, request
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired

from followup import audit, links
from followup.db import db
from followup.intake import IntakeError
from followup.models import Clinic, Site
from followup.models.photos import ANSWER_FIELDS
from followup.photos import receive_photo

bp = Blueprint("patient", __name__, url_prefix="/u")

ANSWER_VALUES = {"yes": True, "no": False, "unsure": None, "": None}


class UploadForm(FlaskForm):
    photo = FileField("Photo", validators=[FileRequired("Choose or take a photo first.")])


def _private(response):
    # Link pages carry a secret in the URL: keep them out of search engines and referrers.
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _problem(problem: links.LinkProblem):
    return _private(make_response(render_template("patient/link_problem.html", reason=problem.reason), 410
                                  if problem.reason in ("expired", "revoked", "used") else 404))


@bp.route("/<token>", methods=["GET", "POST"])
def upload(token: str):
    try:
        link = links.resolve_link(token)
    except links.LinkProblem as problem:
        return _problem(problem)
    site = db.session.get(Site, link.site_id)
    clinic = db.session.get(Clinic, site.patient.clinic_id)
    form = UploadForm()
    status = 200
    if form.validate_on_submit():
        answers = {f: ANSWER_VALUES.get(request.form.get(f, ""), None) for f in ANSWER_FIELDS}
        try:
            photo = receive_photo(site, form.photo.data.read(), kind="followup", answers=answers, link=link)
        except IntakeError as exc:
            form.photo.errors = [exc.message]
            status = exc.status
        else:
            audit.record("patient_upload", "photo", photo.id, actor=f"link:{link.id}")
            return _private(make_response(render_template("patient/received.html", clinic=clinic, photo=photo,
                                                          token=token)))
    elif request.method == "POST":
        status = 400
    return _private(make_response(render_template("patient/upload.html", form=form, clinic=clinic, site=site,
                                                  answers=ANSWER_FIELDS), status))
