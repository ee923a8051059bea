"""Photos: upload, status with analysis, the image itself and its analyses' overlays (authorised), and patient
upload links."""
from __future__ import annotations

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import select

from followup import audit
from followup.api.schemas import (
    PhotoFileSchema,
    PhotoSchema,
    PhotoUploadRequestSchema,
    PhotoUploadSchema,
    UploadLinkSchema,
)
from followup.auth import api_user, roles_required
from followup.db import db
from followup.dicom.builder import CONTENT_TYPE
from followup.dicom.export import photo_dicom
from followup.intake.cleaning import IntakeError
from followup.intake.photos import receive_photo
from followup.models import DicomPush
from followup.models.photos import PhotoStatus
from followup.records import links
from followup.records.patients import overlay_for, photo_for, site_for
from followup.storage import image_mimetype, storage

blp = Blueprint("api_photos", __name__, description="Photos and upload links")
_BINARY = {"type": "string", "format": "binary"}


def photo_body(photo) -> dict:
    analyses = [a for a in photo.analyses if a.comparison == "baseline"] or photo.analyses
    return {
        "id": photo.id, "site_id": photo.site_id, "kind": photo.kind, "status": photo.status,
        "status_detail": photo.status_detail, "received_at": photo.received_at, "modality": photo.modality,
        "attempts": photo.attempts,
        "next_attempt_at": photo.next_attempt_at if photo.status == PhotoStatus.QUEUED else None,
        "analysis": analyses[-1] if analyses else None,
        "dicom_push": db.session.execute(select(DicomPush).where(DicomPush.photo_id == photo.id)).scalar_one_or_none(),
    }


@blp.route("/sites/<int:site_id>/photos")
class SitePhotos(MethodView):
    @roles_required()
    @blp.arguments(PhotoUploadSchema, location="form")
    @blp.arguments(PhotoFileSchema, location="files")
    @blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": PhotoUploadRequestSchema}}})
    @blp.response(202, PhotoSchema)
    def post(self, form, files, site_id):
        """Upload a baseline or follow-up photo (multipart); analysis runs in the background.

        A baseline that is accepted gets the scar's outline proposed on it (see the site's ``outline``)."""
        user = api_user()
        site = site_for(user, site_id)
        upload = files["file"]
        kind, modality = form.pop("kind"), form.pop("modality")
        try:
            photo = receive_photo(site, upload.read(), kind=kind, answers=form, user=user, modality=modality)
        except IntakeError as exc:
            abort(exc.status, message=exc.message, code=exc.code)
        audit.record("upload_photo", "photo", photo.id, user=user)
        return photo_body(photo)


@blp.route("/photos/<int:photo_id>")
class PhotoResource(MethodView):
    @roles_required()
    @blp.response(200, PhotoSchema)
    def get(self, photo_id):
        """A photo's status and, once done, its analysis."""
        user = api_user()
        photo = photo_for(user, photo_id)
        audit.record("read_photo", "photo", photo.id, user=user)
        return photo_body(photo)


@blp.route("/photos/<int:photo_id>/image")
class PhotoImage(MethodView):
    @roles_required()
    @blp.response(200, content_type="image/jpeg")
    def get(self, photo_id):
        """The stored photo (metadata-free JPEG); every view is audited."""
        user = api_user()
        photo = photo_for(user, photo_id)
        audit.record("view_photo_image", "photo", photo.id, user=user)
        response = Response(storage().get(photo.storage_key), mimetype="image/jpeg")
        response.headers["Cache-Control"] = "private, no-store"
        return response


@blp.route("/analyses/<int:analysis_id>/overlays/<name>")
class AnalysisOverlay(MethodView):
    @roles_required()
    @blp.response(200, _BINARY, content_type="image/jpeg")
    @blp.doc(responses={"200": {"content": {"image/jpeg": {"schema": _BINARY}, "image/png": {"schema": _BINARY}}}})
    def get(self, analysis_id, name):
        """An image an analysis of a photo made (``aligned``, ``outline``, ``heatmap``, ``saliency``), as the
        triage page shows it; every view is audited."""
        user = api_user()
        analysis, key = overlay_for(user, analysis_id, name)
        audit.record("view_overlay", "analysis", analysis.id, user=user, overlay=name)
        response = Response(storage().get(key), mimetype=image_mimetype(key))
        response.headers["Cache-Control"] = "private, no-store"
        return response


@blp.route("/photos/<int:photo_id>/dicom")
class PhotoDicom(MethodView):
    @roles_required()
    @blp.response(200, _BINARY, content_type=CONTENT_TYPE)
    def get(self, photo_id):
        """The photo as a DICOM file for an image archive: a VL Photographic Image (a Dermoscopic Photography
        Image for dermoscopy) with the stored JPEG as it is; every download is audited."""
        user = api_user()
        photo = photo_for(user, photo_id)
        audit.record("export_photo_dicom", "photo", photo.id, user=user)
        response = Response(photo_dicom(photo), mimetype=CONTENT_TYPE)
        response.headers["Cache-Control"] = "private, no-store"
        response.headers["Content-Disposition"] = f'attachment; filename="photo-{photo.id}.dcm"'
        return response


@blp.route("/sites/<int:site_id>/upload-link")
class UploadLinkResource(MethodView):
    @roles_required()
    @blp.response(200, UploadLinkSchema)
    def post(self, site_id):
        """A one-time patient upload link for this site (the URL an SMS reminder carries)."""
        user = api_user()
        site = site_for(user, site_id)
        token, link = links.create_link(site)
        audit.record("create_upload_link", "site", site.id, user=user, commit=False, link_id=link.id)
        db.session.commit()
        return {"url": links.link_url(token), "expires_at": link.expires_at}
