"""Request and response schemas; they validate input and are the OpenAPI document's components."""
from __future__ import annotations

from datetime import date, timezone

import marshmallow as ma
from marshmallow import ValidationError, post_dump, validates, validates_schema

from followup.db import MAX_ID
from followup.models.alerts import OUTCOMES, AlertStatus
from followup.models.patients import OUTLINE_SOURCES
from followup.models.photos import MODALITIES, PhotoKind
from followup.records.accounts import MAX_EMAIL, MAX_NAME
from followup.records.patients import SCAR_LENGTH_MESSAGE, SCAR_LENGTH_MM, check_excision_date, normalise_e164
from recurrence.encoding import DIAGNOSES


class Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class TokenRequestSchema(Strict):
    email = ma.fields.Email(required=True)
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1024))


class TokenSchema(ma.Schema):
    token = ma.fields.String()
    expires_at = ma.fields.DateTime()


class PatientCreateSchema(Strict):
    """A patient to enrol: the API's body, and the fields of the clinic's enrolment page (whose messages these are:
    the API names the field before each)."""

    name = ma.fields.String(required=True, validate=[
        ma.validate.Length(min=1, error="Enter the patient's name."),
        ma.validate.Length(max=200, error="The name is too long: {max} characters at most.")],
        error_messages={"required": "Enter the patient's name.", "null": "Enter the patient's name."})
    phone = ma.fields.String(required=True, metadata={"description": "E.164, e.g. +447700900123"},
                             error_messages={"required": "Enter the patient's mobile number.",
                                             "invalid": "The phone number must be in E.164 form, e.g. +447700900123."})
    date_of_birth = ma.fields.Date(load_default=None, allow_none=True,
                                   error_messages={"invalid": "Enter a date as YYYY-MM-DD."})
    sms_consent = ma.fields.Boolean(required=True)
    timezone = ma.fields.String(load_default=None, allow_none=True, metadata={"description": "IANA zone"})

    @validates("phone")
    def _phone(self, value, **kwargs):
        try:
            normalise_e164(value)
        except ValueError as exc:
            raise ValidationError(f"The phone number {exc}.") from None

    @validates("date_of_birth")
    def _dob(self, value, **kwargs):
        if value is not None and value > date.today():
            raise ValidationError("The date of birth cannot be in the future.")

    @validates("timezone")
    def _tz(self, value, **kwargs):
        if value is None:
            return
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError("timezone must be an IANA time zone such as Europe/London") from None


class SiteSummarySchema(ma.Schema):
    id = ma.fields.Integer()
    body_site = ma.fields.String()
    diagnosis = ma.fields.String()
    stage = ma.fields.String(allow_none=True)
    excision_date = ma.fields.Date()
    scar_length_mm = ma.fields.Float(allow_none=True, metadata={
        "description": "the scar's length measured in clinic at enrolment, mm; null when not given"})


class PatientSchema(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    phone = ma.fields.String()
    date_of_birth = ma.fields.Date(allow_none=True)
    sms_consent = ma.fields.Boolean()
    opted_out = ma.fields.Function(lambda p: p.opted_out_at is not None)
    timezone = ma.fields.String()
    created_at = ma.fields.DateTime()
    sites = ma.fields.List(ma.fields.Nested(SiteSummarySchema))


class SiteCreateSchema(Strict):
    """An excision site: the API's body, and the site fields of the clinic's enrolment and new-site forms."""

    body_site = ma.fields.String(required=True, validate=[
        ma.validate.Length(min=1, error="Say where the scar is, e.g. left shoulder."),
        ma.validate.Length(max=120, error="Where the scar is: {max} characters at most.")],
        error_messages={"required": "Say where the scar is, e.g. left shoulder.",
                        "null": "Say where the scar is, e.g. left shoulder."})
    diagnosis = ma.fields.String(required=True, validate=ma.validate.OneOf(
        DIAGNOSES, error="Choose a diagnosis: one of {choices}."),
        error_messages={"required": "Choose a diagnosis.", "null": "Choose a diagnosis."})
    stage = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(
        max=20, error="The stage is too long: {max} characters at most."))
    excision_date = ma.fields.Date(required=True, error_messages={
        "required": "Enter the excision date.", "null": "Enter the excision date.",
        "invalid": "Enter the excision date as YYYY-MM-DD."})
    dermatologist_id = ma.fields.Integer(load_default=None, allow_none=True, validate=ma.validate.Range(1, MAX_ID))
    scar_length_mm = ma.fields.Float(
        load_default=None, allow_none=True, validate=ma.validate.Range(
            SCAR_LENGTH_MM[0], SCAR_LENGTH_MM[1], error=SCAR_LENGTH_MESSAGE),
        error_messages={"invalid": "Enter the scar's length in mm, e.g. 24."},
        metadata={"description": "the scar's length measured in clinic, mm: with the scar's outline on the baseline, "
                                 "the scale of photos without a reference sticker (scale_source clinic)"})

    @validates("excision_date")
    def _excision(self, value, **kwargs):
        try:
            check_excision_date(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class SiteUpdateSchema(Strict):
    scar_length_mm = ma.fields.Float(
        required=True, allow_none=True, validate=ma.validate.Range(
            SCAR_LENGTH_MM[0], SCAR_LENGTH_MM[1], error=SCAR_LENGTH_MESSAGE),
        error_messages={"invalid": "Enter the scar's length in mm, e.g. 24."},
        metadata={"description": "the scar's length measured in clinic, mm; null clears it"})


class PlanItemSchema(ma.Schema):
    due_date = ma.fields.Date()
    status = ma.fields.String()


class PlanSchema(ma.Schema):
    protocol = ma.fields.String()
    source = ma.fields.String()
    visits = ma.fields.List(ma.fields.Nested(PlanItemSchema))
    photos = ma.fields.List(ma.fields.Nested(PlanItemSchema))


class OutlineSchema(ma.Schema):
    polygon = ma.fields.List(ma.fields.List(ma.fields.Float()), metadata={
        "description": "The scar's outline, [[x, y], ...] in pixels of the baseline photo `photo_id`"})
    source = ma.fields.String(validate=ma.validate.OneOf(OUTLINE_SOURCES), metadata={
        "description": "auto: proposed on the baseline; staff: drawn or tapped by staff"})
    photo_id = ma.fields.Integer(metadata={"description": "The baseline photo it was drawn on"})
    margin_mm = ma.fields.Float(metadata={
        "description": "Watched margin around the outline, from the clinic's protocol for the diagnosis"})
    note = ma.fields.String(allow_none=True, metadata={
        "description": "What staff should check, e.g. that a new baseline replaced the one they outlined"})


class SiteSchema(SiteSummarySchema):
    patient_id = ma.fields.Integer()
    plan = ma.fields.Nested(PlanSchema)
    outline = ma.fields.Nested(OutlineSchema, allow_none=True, metadata={
        "description": "The scar outlined on the baseline photo; null until there is one"})
    clinic_mm_per_px = ma.fields.Float(allow_none=True, metadata={
        "description": "mm per baseline pixel from scar_length_mm over the outline's longest extent; null without "
                       "both"})


class OutlineRequestSchema(Strict):
    """Either a drawn outline or a tap on the scar, on the site's current baseline photo."""

    polygon = ma.fields.List(
        ma.fields.List(ma.fields.Float(), validate=ma.validate.Length(equal=2)),
        validate=ma.validate.Length(min=3, max=2000),
        metadata={"description": "Drawn outline, [[x, y], ...] (at least 3 points) in baseline-photo pixels"})
    point = ma.fields.List(ma.fields.Float(), validate=ma.validate.Length(equal=2), metadata={
        "description": "A tap on the scar, [x, y] in baseline-photo pixels; the server outlines what it falls on"})
    photo_id = ma.fields.Integer(load_default=None, allow_none=True, metadata={
        "description": "The baseline photo the outline was made on; 409 when it is no longer the baseline"})

    @validates_schema
    def _one_of(self, data, **kwargs):
        if ("polygon" in data) == ("point" in data):
            raise ValidationError("send either polygon or point", "polygon")


class PhotoUploadSchema(ma.Schema):
    kind = ma.fields.String(required=True, validate=ma.validate.OneOf([str(k) for k in PhotoKind]))
    modality = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.OneOf(MODALITIES),
                                metadata={"description": "clinical (a phone photo) or dermoscopy; "
                                                         "detected from the pixels when left out"})
    grew = ma.fields.Boolean(load_default=None, allow_none=True)
    itch = ma.fields.Boolean(load_default=None, allow_none=True)
    bleed = ma.fields.Boolean(load_default=None, allow_none=True)
    hurt = ma.fields.Boolean(load_default=None, allow_none=True)
    changed = ma.fields.Boolean(load_default=None, allow_none=True)
    elevation = ma.fields.Boolean(load_default=None, allow_none=True)

    class Meta:
        unknown = ma.RAISE


class PhotoFileSchema(ma.Schema):
    file = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class PhotoUploadRequestSchema(PhotoUploadSchema, PhotoFileSchema):
    """The whole multipart body of a photo upload, for the OpenAPI document (the view reads the form fields and
    the file separately)."""


class RegionSchema(ma.Schema):
    """A changed region, in baseline pixels; figures the pipeline adds later are passed through as they are."""

    bbox = ma.fields.List(ma.fields.Integer(), metadata={"description": "[x0, y0, x1, y1]"})
    area_px = ma.fields.Integer()
    growth_pct = ma.fields.Float(allow_none=True)
    delta_e = ma.fields.Float(allow_none=True)
    distance_to_lesion_px = ma.fields.Float(allow_none=True)
    kind = ma.fields.String()
    score = ma.fields.Float()
    in_site = ma.fields.Boolean(metadata={"description": "Whether it touches the watched site (scar + margin)"})
    recurrence_score = ma.fields.Float(allow_none=True)
    model_reasons = ma.fields.List(ma.fields.String())
    area_mm2 = ma.fields.Float(allow_none=True, metadata={"description": "area in mm²; null without a scale"})
    diameter_mm = ma.fields.Float(allow_none=True, metadata={
        "description": "diameter of the circle of the region's area, mm; null without a scale"})
    distance_to_scar_mm = ma.fields.Float(allow_none=True, metadata={
        "description": "distance to the lesion or scar, mm; null without a scale (or unknown)"})

    @post_dump(pass_original=True)
    def _keep_other_figures(self, data, original, **kwargs):
        if isinstance(original, dict):
            data.update({k: v for k, v in original.items() if k not in data})
        return data


class AnalysisSchema(ma.Schema):
    id = ma.fields.Integer()
    comparison = ma.fields.String()
    reference_photo_id = ma.fields.Integer(allow_none=True)
    registered = ma.fields.Boolean()
    homography = ma.fields.Raw(allow_none=True)
    alignment_confidence = ma.fields.Float(allow_none=True)
    quality = ma.fields.Dict()
    regions = ma.fields.List(ma.fields.Nested(RegionSchema))
    change_score = ma.fields.Float(allow_none=True)
    recurrence_score = ma.fields.Float(allow_none=True)
    flag = ma.fields.Boolean()
    site_flag = ma.fields.Boolean(allow_none=True, metadata={
        "description": "flag counting only regions in the watched site; null for analyses made before sites had one"})
    modality = ma.fields.String(allow_none=True, metadata={"description": "clinical or dermoscopy: the rules used"})
    reasons = ma.fields.List(ma.fields.String())
    model_version = ma.fields.String(allow_none=True)
    scale_mm_per_px = ma.fields.Float(allow_none=True, metadata={
        "description": "mm per follow-up pixel at the reference sticker (as analyze-batch gives it); null: no scale"})
    reference_mm_per_px = ma.fields.Float(allow_none=True, metadata={
        "description": "mm per reference pixel, the regions' own scale; null: no scale"})
    scale_source = ma.fields.String(allow_none=True, metadata={
        "description": "marker (the reference sticker) | clinic (a length measured at enrolment) | null"})
    scale_reasons = ma.fields.List(ma.fields.String(), allow_none=True, metadata={
        "description": "why there is no scale, or where it came from"})
    created_at = ma.fields.DateTime()


class DicomPushSchema(ma.Schema):
    state = ma.fields.String(metadata={"description": "pending | sent | failed"})
    attempts = ma.fields.Integer()
    next_try_at = ma.fields.DateTime(metadata={"description": "When a pending push is tried next"})
    last_error = ma.fields.String(allow_none=True)
    sent_at = ma.fields.DateTime(allow_none=True)


class PhotoSchema(ma.Schema):
    id = ma.fields.Integer()
    site_id = ma.fields.Integer()
    kind = ma.fields.String()
    status = ma.fields.String()
    status_detail = ma.fields.String(allow_none=True)
    received_at = ma.fields.DateTime()
    modality = ma.fields.String(allow_none=True, metadata={"description": "As declared at upload"})
    attempts = ma.fields.Integer(metadata={"description": "analysis attempts so far (3 at most)"})
    next_attempt_at = ma.fields.DateTime(allow_none=True, metadata={
        "description": "when a queued photo whose last analysis attempt failed is tried again (backoff); "
                       "null otherwise"})
    analysis = ma.fields.Nested(AnalysisSchema, allow_none=True)
    dicom_push = ma.fields.Nested(DicomPushSchema, allow_none=True, metadata={
        "description": "Its push to the DICOMweb archive (DICOMWEB_URL); null when none is queued"})


class UploadLinkSchema(ma.Schema):
    url = ma.fields.String()
    expires_at = ma.fields.DateTime()


class AlertQuerySchema(ma.Schema):
    status = ma.fields.String(load_default=AlertStatus.OPEN,
                              validate=ma.validate.OneOf([*map(str, AlertStatus), "active"]))
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=200))
    cursor = ma.fields.String(load_default=None, allow_none=True)


class AlertSchema(ma.Schema):
    id = ma.fields.Integer()
    site_id = ma.fields.Integer()
    patient_id = ma.fields.Function(lambda a: a.site.patient_id)
    photo_id = ma.fields.Integer(allow_none=True)
    kind = ma.fields.String()
    priority = ma.fields.Integer()
    recurrence_score = ma.fields.Float()
    reasons = ma.fields.List(ma.fields.String())
    created_at = ma.fields.DateTime()
    status = ma.fields.String()
    outcome = ma.fields.String(allow_none=True)


class AlertPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AlertSchema))
    next = ma.fields.String(allow_none=True)


class ResolveSchema(Strict):
    outcome = ma.fields.String(required=True, validate=ma.validate.OneOf(OUTCOMES))
    note = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=5000))


class UserCreateSchema(Strict):
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=MAX_EMAIL))
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=12, max=1024))
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(("admin", "dermatologist")))
    name = ma.fields.String(load_default="", validate=ma.validate.Length(max=MAX_NAME))
    phone = ma.fields.String(load_default=None, allow_none=True, metadata={"description": "E.164, for urgent alerts"})

    @validates("phone")
    def _phone(self, value, **kwargs):
        if value is not None:
            try:
                normalise_e164(value)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None


class UserSchema(ma.Schema):
    id = ma.fields.Integer()
    email = ma.fields.String()
    name = ma.fields.String()
    role = ma.fields.String()
    active = ma.fields.Boolean()


class UtcDateTime(ma.fields.AwareDateTime):
    """An ISO 8601 date-time, UTC when it names no offset, returned in UTC (one an offset would carry past
    year 1 or 9999 is refused here, not a 500 in the database)."""

    def __init__(self, **kwargs):
        super().__init__(default_timezone=timezone.utc, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(timezone.utc)
        except OverflowError:
            raise ValidationError("date-time out of range") from None


class AuditQuerySchema(ma.Schema):
    """The audit trail of a patient and/or a user of the caller's clinic (all the clinic's staff when neither)."""

    patient_id = ma.fields.Integer(load_default=None, validate=ma.validate.Range(1, MAX_ID))
    user_id = ma.fields.Integer(load_default=None, validate=ma.validate.Range(1, MAX_ID))
    since = UtcDateTime(load_default=None, metadata={"description": "From this time (inclusive), UTC by default"})
    until = UtcDateTime(load_default=None, metadata={"description": "Up to this time (exclusive), UTC by default"})


class AuditPageQuerySchema(AuditQuerySchema):
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=200))
    cursor = ma.fields.String(load_default=None, allow_none=True)


class AuditEventSchema(ma.Schema):
    id = ma.fields.Integer()
    at = ma.fields.DateTime()
    actor = ma.fields.String(metadata={"description": "user:ID, link:ID (a patient's upload link), system, cli, "
                                                      "anonymous (a refused sign-in)"})
    user_id = ma.fields.Integer(allow_none=True)
    user_email = ma.fields.String(allow_none=True)
    action = ma.fields.String()
    record_type = ma.fields.String()
    record_id = ma.fields.Integer(allow_none=True)
    ip = ma.fields.String(allow_none=True)
    patient_ids = ma.fields.List(ma.fields.Integer(), metadata={"description": "The patients it showed or changed"})
    detail = ma.fields.Dict()


class AuditPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AuditEventSchema))
    next = ma.fields.String(allow_none=True)
