"""Demo data for ``seed-demo`` (and ``make run`` on an empty database): a clinic that has run for a year.

Twelve patients enrolled at different times over the last year, each site's baseline dated at its excision and
follow-up photos on its plan's dates, with the texts that asked for them (sent and delivered on those dates).
Baselines are real phone photos (PAD-UFES-20, CC BY 4.0, see demo_photos/ATTRIBUTION.md); follow-ups are
generated from them by the phone recipe (`registration.phone_synth.make_phone_pair`): most unchanged, a few
with a change, one that grows over three photos, one blurred photo and its retake, and one patient whose last
photo is overdue. Every photo goes through the real pipeline, so scores, flags and alerts are the pipeline's,
never canned numbers. Alerts older than a few days carry the outcome a dermatologist gave them, so the
performance page has a history; the recent ones wait in the queue.

The clinic asks for a photo every 2 months in year 1 (a protocol override, `Clinic.protocol_overrides`), so a
first ``make run`` analyses about 35 follow-ups, not a hundred.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from dateutil.relativedelta import relativedelta
from PIL import Image
from sqlalchemy import func, select
from tqdm import tqdm

from followup.analysis import jobs
from followup.db import db, utcnow
from followup.intake.photos import receive_photo
from followup.models import Alert, Analysis, Clinic, OutboundMessage, Photo, PlanItem, Site, UploadLink, User
from followup.models.alerts import AlertKind, AlertPriority, AlertStatus
from followup.models.messages import OutboxStatus
from followup.models.photos import PhotoKind, PhotoStatus
from followup.models.plans import PlanItemKind, PlanItemStatus
from followup.outreach import outbox
from followup.outreach.texts import render_sms
from followup.records import links
from followup.records.accounts import create_user
from followup.records.patients import create_patient, create_site, site_plan
from followup.records.plans import PROTOCOLS

PHOTOS = Path(__file__).resolve().parent / "demo_photos"
DERM = ("derm@example.org", "demo-derm-password")
ADMIN = ("admin@example.org", "demo-admin-password")
#: Alerts raised more than this long ago have been decided; newer ones wait in the queue.
OPEN_DAYS = 6
#: What a dermatologist decided, by the truth the recipe drew (the demo's stand-in for histology).
REAL_CHANGES = ("growth", "darkening", "new_lesion")
DEMO_PHOTO_SCHEDULE = [[12, 2], [36, 2], [60, 3]]  # the demo clinic's override: every 2 months in year 1


@dataclass(frozen=True)
class Event:
    """What one follow-up photo shows: a change of the recipe (``kind``), or a growth of the lesion by
    ``scale`` (a change that grows over several photos), a confounder, the patient's answers, ``blurred``
    (a photo the pipeline cannot read, followed by a retake the next day)."""

    kind: str = "none"
    scale: Optional[float] = None
    donor: Optional[str] = None
    confounder: Optional[str] = None
    answers: dict = field(default_factory=dict)
    blurred: bool = False


NONE = Event()


@dataclass(frozen=True)
class Story:
    name: str
    phone: str
    photo: str
    body_site: str
    diagnosis: str
    stage: Optional[str]
    months: int  # excision this many months and ``days`` days ago
    days: int
    events: dict[int, Event] = field(default_factory=dict)  # follow-up number (1 = first) -> what it shows
    skip_last: bool = False  # the latest request went unanswered: the patient is overdue


# Months even and not a multiple of 6 put the latest photo request ``days`` ago (no clinic visit within two
# weeks of it); the stories with an open alert end that way. Chosen so that the pipeline flags what it should
# (checked by tests/followup/test_demo.py).
STORIES = [
    Story("Alex Morgan", "+447700900101", "PAT_171_265_757", "left forearm", "melanoma", "IB", 10, 2,
          {2: Event("growth", scale=1.06), 3: Event("growth", scale=1.16),
           4: Event("growth", scale=1.3, answers={"grew": True, "bleed": True})}),
    Story("Sam Patel", "+447700900102", "PAT_279_429_142", "chest", "bcc", None, 8, 1,
          {1: Event(confounder="hair"), 2: Event(confounder="flash"), 3: Event("darkening")}),
    Story("Jo Williams", "+447700900103", "PAT_289_1399_481", "right forearm", "scc", None, 8, 3,
          {2: Event(confounder="shadow"), 3: Event("new_lesion", answers={"grew": True})}),
    Story("Chris Evans", "+447700900104", "PAT_31_42_680", "left forearm", "bcc", None, 10, 4,
          {1: Event("new_lesion", donor="pink"), 2: Event(confounder="ink"), 4: Event("growth")}),
    Story("Maria Silva", "+447700900105", "PAT_370_2558_573", "right forearm", "other", None, 4, 1,
          {1: Event(confounder="fold"), 2: Event(answers={"grew": True})}),
    Story("Tom Baker", "+447700900106", "PAT_366_2448_563", "back of left hand", "bcc", None, 13, 12,
          {2: Event("new_lesion"), 3: Event(confounder="cream"), 4: Event("new_lesion", donor="pink")}),
    Story("Ana Costa", "+447700900107", "PAT_300_1478_445", "left forearm", "melanoma", "IIA", 11, 9,
          {1: Event("new_lesion", donor="pink"), 3: Event("growth", answers={"grew": True})}),
    Story("Lee Chen", "+447700900108", "PAT_326_690_797", "right cheek", "bcc", None, 8, 5,
          {1: Event("new_lesion"), 2: Event(confounder="flash"), 3: Event("darkening")}),
    Story("Priya Nair", "+447700900109", "PAT_388_787_818", "chest", "melanoma", "IB", 9, 20,
          {2: Event("darkening")}),
    Story("Owen Hughes", "+447700900110", "PAT_520_983_221", "upper back", "scc", None, 5, 11,
          {1: Event(blurred=True)}),
    Story("Ruth Okafor", "+447700900111", "PAT_527_1359_165", "left upper arm", "melanoma", "IA", 4, 10,
          {1: Event("new_lesion", donor="pink")}, skip_last=True),
    Story("Dan Murphy", "+447700900112", "PAT_325_1506_999", "left temple", "bcc", "low", 3, 5,
          {1: Event("darkening")}),
]


def database_is_empty() -> bool:
    return db.session.execute(select(func.count()).select_from(Clinic)).scalar_one() == 0


def _jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=92)
    return out.getvalue()


def _load(photo_id: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(Image.open(PHOTOS / f"{photo_id}.jpg").convert("RGB"))
    lesion = np.asarray(Image.open(PHOTOS / f"{photo_id}_mask.png").convert("L")) > 127
    return image, lesion


def _grown(image: np.ndarray, lesion: np.ndarray, scale: float) -> np.ndarray:
    """The scene with the lesion grown about its centre by ``scale`` (feathered edge)."""
    ys, xs = np.nonzero(lesion)
    cx, cy = xs.mean(), ys.mean()
    m = np.array([[scale, 0, cx * (1 - scale)], [0, scale, cy * (1 - scale)]])
    h, w = lesion.shape
    grown_img = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    grown = cv2.warpAffine(lesion.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST).astype(np.float32)
    alpha = cv2.GaussianBlur(grown, (0, 0), 2.0)[..., None]
    return np.clip(image * (1 - alpha) + grown_img * alpha, 0, 255).astype(np.uint8)


def _followup_image(image: np.ndarray, lesion: np.ndarray, event: Event, rng: np.random.Generator) -> np.ndarray:
    from registration.phone_synth import make_phone_pair

    capture = dict(scale_range=(0.8, 1.25), max_tilt=20.0, rotation=25.0, card=None, background=None)
    if event.scale is not None:
        pair = make_phone_pair(_grown(image, lesion, event.scale), lesion_mask=lesion, kind="none",
                               confounder=event.confounder, rng=rng, **capture)
    else:
        pair = make_phone_pair(image, lesion_mask=lesion, kind=event.kind, confounder=event.confounder, rng=rng,
                               donor=event.donor, **capture)
    moving = pair.moving_image
    if event.blurred:
        moving = cv2.GaussianBlur(moving, (0, 0), 9.0)
    return moving


def _at(day: date, clock: time, tz: timezone = timezone.utc) -> datetime:
    return datetime.combine(day, clock, tz)


def seed_demo(*, seed: int = 7, analyse_now: bool = True, stories: Optional[list[Story]] = None,
              today: Optional[date] = None, progress: bool = True) -> dict:
    """Create the demo clinic with a year of history. With ``analyse_now`` (the default) every photo is analysed
    here, in date order, whatever JOB_BACKEND says; without, the photos stay queued for the worker and the
    history (dates of alerts, outcomes) is not written. ``stories`` picks patients (tests use a few)."""
    stories = STORIES if stories is None else stories
    today = today or utcnow().date()
    rng = np.random.default_rng(seed)
    overrides = {name: {"photos": DEMO_PHOTO_SCHEDULE} for name in PROTOCOLS}
    clinic = Clinic(name="Demo Dermatology Clinic", phone="+441632960000", timezone="Europe/London",
                    protocol_overrides=overrides)
    db.session.add(clinic)
    db.session.flush()
    derm = create_user(clinic, email=DERM[0], password=DERM[1], role="dermatologist", name="Dr Demo Derm",
                       phone="+447700900001")
    admin = create_user(clinic, email=ADMIN[0], password=ADMIN[1], role="admin", name="Demo Admin")
    opened = _at(today - relativedelta(months=14), time(9, 0))
    clinic.created_at = derm.created_at = admin.created_at = opened
    db.session.commit()

    # Every photo of every patient, in date order, so the pipeline sees them as the clinic did.
    uploads = []  # (received_at, site id, kind, image, event, story)
    for index, story in enumerate(stories):
        excision = today - relativedelta(months=story.months) - timedelta(days=story.days)
        patient = create_patient(clinic, name=story.name, phone=story.phone, sms_consent=True)
        patient.created_at = _at(excision, time(15, 0))
        site = create_site(patient, body_site=story.body_site, diagnosis=story.diagnosis, stage=story.stage,
                           excision_date=excision, dermatologist=derm, today=excision)
        site.created_at = patient.created_at
        plan = site_plan(site)
        plan.created_at = patient.created_at
        image, lesion = _load(story.photo)
        uploads.append((_at(excision, time(14, 30)), site.id, PhotoKind.BASELINE, partial(np.asarray, image), NONE,
                        story, None))
        photo_items = [i for i in plan.items if i.kind == PlanItemKind.PHOTO and i.due_date <= today]
        if story.skip_last and photo_items:
            photo_items = photo_items[:-1]
        for number, item in enumerate(photo_items, start=1):
            event = story.events.get(number, NONE)
            # Each photo draws from its own generator: a story's photos do not change when another story does.
            draw = np.random.default_rng([seed, STORIES.index(story) if story in STORIES else 100 + index, number])
            clock = time(int(draw.integers(11, 20)), int(draw.integers(0, 60)))
            received = _at(item.due_date, clock)
            uploads.append((received, site.id, PhotoKind.FOLLOWUP, partial(_followup_image, image, lesion, event, draw),
                            event, story, item))
            if event.blurred:  # the retake the next day, of the unchanged scar
                uploads.append((received + timedelta(days=1, hours=1), site.id, PhotoKind.FOLLOWUP,
                                partial(_followup_image, image, lesion, NONE, draw), NONE, story, None))
        for item in plan.items:  # past clinic visits took place
            if item.kind == PlanItemKind.VISIT and item.due_date < today:
                item.status, item.completed_at = PlanItemStatus.DONE, _at(item.due_date, time(10, 0))
                _message(clinic, patient, "visit_two_weeks", item.due_date - timedelta(days=14),
                         f"demo:visit:{item.id}", site=site, due_date=item.due_date)
    db.session.commit()

    uploads.sort(key=lambda u: u[0])
    bar = tqdm(uploads, desc="demo photos", unit="photo", disable=not progress)
    for received, site_id, kind, make_image, event, story, item in bar:  # follow-ups generated here, in the bar
        site = db.session.get(Site, site_id)
        link = None
        if kind == PhotoKind.FOLLOWUP and item is not None:
            _message(clinic, site.patient, "photo_heads_up", item.due_date - timedelta(days=2),
                     f"demo:heads_up:{item.id}", site=site, due_date=item.due_date)
            token, link = links.create_link(site)
            link.created_at = _at(item.due_date, time(10, 0))
            link.expires_at = link.created_at + timedelta(days=14)
            _message(clinic, site.patient, "photo_due", item.due_date, f"demo:photo_due:{item.id}",
                     site=site, link=links.sealed_link(token))
            db.session.commit()
        answers = {"grew": None, "itch": None, "bleed": None, **event.answers} if kind == PhotoKind.FOLLOWUP else None
        before = _last_message_id()
        photo = receive_photo(site, _jpeg(make_image()), kind=kind, answers=answers, link=link, enqueue=False,
                              received_at=received, captured_at=received - timedelta(minutes=2))
        if analyse_now:
            jobs.run_photo_job(photo.id)
            _date_history(photo, received, before, event, rng, today)
    if analyse_now:
        _close_stale_links(today)
    db.session.commit()
    return summary()


def _last_message_id() -> int:
    return db.session.execute(select(func.coalesce(func.max(OutboundMessage.id), 0))).scalar_one()


def _message(clinic: Clinic, patient, template: str, day: date, key: str, **context) -> None:
    """A text that went out on ``day`` at 10:00 and was delivered."""
    message = outbox.enqueue(key=key, clinic_id=clinic.id, to=patient.phone, patient_id=patient.id,
                              body=render_sms(template, clinic=clinic, **context), purpose=template)
    if message is not None:
        _delivered(message, _at(day, time(10, 0)))


def _delivered(message: OutboundMessage, when: datetime) -> None:
    message.status, message.attempts = OutboxStatus.DELIVERED, 1
    message.created_at = message.attempted_at = message.sent_at = message.updated_at = when
    message.twilio_sid = f"SMdemo{message.id:026d}"


def _date_history(photo: Photo, received: datetime, before: int, event: Event, rng: np.random.Generator,
                  today: date) -> None:
    """Put what the pipeline just did on the photo's date: analyses, alerts, texts; decide old alerts."""
    db.session.refresh(photo)
    done = received + timedelta(minutes=int(rng.integers(1, 4)))
    photo.status_changed_at = done
    for analysis in db.session.execute(select(Analysis).where(Analysis.photo_id == photo.id)).scalars():
        analysis.created_at = done
    if photo.upload_link_id is not None:
        link = db.session.get(UploadLink, photo.upload_link_id)
        link.used_at = received if link.used_at else None
    for message in db.session.execute(select(OutboundMessage).where(OutboundMessage.id > before)).scalars():
        _delivered(message, done)
    derm = db.session.execute(select(User).where(User.email == DERM[0])).scalar_one()
    for alert in db.session.execute(select(Alert).where(Alert.photo_id == photo.id)).scalars():
        alert.created_at = done
        if (today - received.date()).days < OPEN_DAYS:
            continue
        hours = {AlertPriority.URGENT: (2, 20), AlertPriority.HIGH: (8, 60),
                 AlertPriority.ROUTINE: (20, 120)}[alert.priority]
        alert.status, alert.resolved_by_id = AlertStatus.RESOLVED, derm.id
        alert.resolved_at = done + timedelta(hours=float(rng.uniform(*hours)))
        alert.outcome = _outcome(alert, event, float(rng.random()))
    db.session.commit()


def _outcome(alert: Alert, event: Event, draw: float) -> str:
    """What the dermatologist decided: a change the recipe made that a clinician would act on needs a visit or
    a biopsy (a pink papule: seen, benign); anything else was no change, or a new photo for one unreadable."""
    if alert.kind == AlertKind.UNREADABLE:
        return "rephoto"
    if event.scale is not None:
        return "visit"  # a slight growth: seen in clinic, and watched
    if event.kind in REAL_CHANGES and event.donor != "pink":
        return "biopsy" if alert.recurrence_score >= 0.6 or draw < 0.3 else "visit"
    if event.kind == "new_lesion":
        return "benign_change"
    return "no_change" if draw < 0.7 else "benign_change"


def _close_stale_links(today: date) -> None:
    """Links of past requests have expired by now (the history's links were made with the demo's dates)."""
    for link in db.session.execute(select(UploadLink).where(UploadLink.revoked_at.is_(None))).scalars():
        if link.expires_at.date() < today:
            link.revoked_at = link.expires_at


def summary() -> dict:
    """Counts of the demo as it stands (the ``seed-demo`` line and the tests read it)."""
    count = lambda q: db.session.execute(q).scalar_one()  # noqa: E731
    first = db.session.execute(select(func.min(Photo.received_at))).scalar_one()
    return {
        "patients": count(select(func.count()).select_from(Site)),
        "photos": count(select(func.count()).select_from(Photo)),
        "photos_done": count(select(func.count()).select_from(Photo).where(Photo.status == PhotoStatus.DONE)),
        "photos_rejected": count(select(func.count()).select_from(Photo).where(Photo.status == PhotoStatus.REJECTED)),
        "open_alerts": count(select(func.count()).select_from(Alert).where(Alert.status != AlertStatus.RESOLVED)),
        "resolved_alerts": count(select(func.count()).select_from(Alert).where(Alert.status == AlertStatus.RESOLVED)),
        "texts": count(select(func.count()).select_from(OutboundMessage)),
        "overdue_items": count(select(func.count()).select_from(PlanItem).where(
            PlanItem.status == PlanItemStatus.PENDING, PlanItem.due_date < utcnow().date())),
        "history_days": (utcnow() - first).days if first else 0,
    }
