"""Typed SQLAlchemy models; import from here so every table is registered."""
from followup.models.accounts import ApiToken, Clinic, User
from followup.models.alerts import Alert
from followup.models.audit import AuditEvent, AuditSubject
from followup.models.dicom import DicomPush
from followup.models.messages import InboundMessage, OutboundMessage
from followup.models.patients import Patient, Site
from followup.models.photos import Analysis, Photo, UploadLink
from followup.models.plans import FollowUpPlan, PlanItem
from followup.models.reminders import PatientSmsDay, Reminder, SchedulerLock

__all__ = [
    "Alert", "Analysis", "ApiToken", "AuditEvent", "AuditSubject", "Clinic", "DicomPush", "FollowUpPlan",
    "InboundMessage", "OutboundMessage", "Patient", "PatientSmsDay", "Photo", "PlanItem", "Reminder", "SchedulerLock",
    "Site", "UploadLink", "User",
]
