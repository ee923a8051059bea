"""The demo tells a true story: a year of a clinic's follow-up, analysed by the real pipeline (issue 20).

One full seed per session (``demo_config`` in tests/conftest.py); these tests only read it.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app import create_app
from followup import queries
from followup.db import db, utcnow
from followup.demo import STORIES
from followup.models import Alert, Analysis, Clinic, FollowUpPlan, OutboundMessage, Patient, Photo, PlanItem, Site


@pytest.fixture(scope="module")
def demo(demo_config):
    app = create_app(demo_config)
    with app.app_context():
        yield app
        db.session.remove()


def scalar(query):
    return db.session.execute(query).scalar_one()


def test_patients_were_enrolled_over_a_year_with_baselines_dated_at_excision(demo):
    sites = list(db.session.execute(select(Site)).scalars())
    assert len(sites) == len(STORIES) == 12
    excisions = sorted(site.excision_date for site in sites)
    assert (excisions[-1] - excisions[0]).days > 270, "enrolled at different times over the year"
    for site in sites:
        baseline = db.session.execute(select(Photo).where(Photo.site_id == site.id, Photo.kind == "baseline")
                                      ).scalar_one()
        assert baseline.received_at.date() == site.excision_date and baseline.status == "done"


def test_follow_ups_are_on_their_plan_dates_and_analysed(demo):
    photos = list(db.session.execute(select(Photo).where(Photo.kind == "followup")).scalars())
    assert len(photos) >= 30
    assert {p.status for p in photos} <= {"done", "rejected"}
    span = max(p.received_at for p in photos) - min(p.received_at for p in photos)
    assert span > timedelta(days=300), "follow-ups span the year, not one day"
    done_items = list(db.session.execute(select(PlanItem).where(PlanItem.kind == "photo", PlanItem.status == "done")
                                         ).scalars())
    assert len(done_items) >= 25
    for item in done_items:
        assert abs((item.completed_at.date() - item.due_date).days) <= 2, "photo sent on the day it was asked for"
    # Real analyses: every accepted follow-up has a baseline comparison with its own scores, dated with it.
    for photo in photos:
        if photo.status == "done":
            analysis = next(a for a in photo.analyses if a.comparison == "baseline")
            assert analysis.change_score is not None and analysis.created_at - photo.received_at < timedelta(hours=1)
    scores = {round(a.change_score, 4) for a in db.session.execute(select(Analysis)).scalars() if a.change_score}
    assert len(scores) > 20, "scores come from the pipeline, not a table"


def test_the_queue_is_full_and_the_first_alert_has_months_of_photos(demo):
    clinic = db.session.execute(select(Clinic)).scalar_one()
    queue = list(db.session.execute(queries.queue_query(clinic.id)).scalars())
    assert 4 <= len(queue) <= 8, [(a.priority, a.recurrence_score) for a in queue]
    assert len({a.priority for a in queue}) >= 2, "alerts of different priorities"
    first = queue[0]
    assert first.priority == 1 and first.kind == "change"
    photos = list(db.session.execute(select(Photo).where(Photo.site_id == first.site_id)
                                     .order_by(Photo.received_at)).scalars())
    assert len(photos) >= 4
    assert photos[-1].received_at - photos[0].received_at > timedelta(days=120)
    # The change grows: the follow-ups' changed area against the baseline rises over its last photos.
    areas = [sum(r.get("area_px", 0) for r in a.regions) for p in photos[1:] for a in p.analyses
             if a.comparison == "baseline"]
    assert areas[-1] > areas[-2] > areas[0]


def test_old_alerts_were_decided_with_outcomes_and_times(demo):
    resolved = list(db.session.execute(select(Alert).where(Alert.status == "resolved")).scalars())
    assert len(resolved) >= 6
    assert {a.outcome for a in resolved} >= {"biopsy", "no_change"}
    for alert in resolved:
        photo = db.session.get(Photo, alert.photo_id)
        assert photo.received_at < alert.created_at < alert.resolved_at < utcnow()
        assert alert.resolved_by_id is not None
    for alert in db.session.execute(select(Alert).where(Alert.status != "resolved")).scalars():
        assert utcnow() - alert.created_at < timedelta(days=7), "only recent photos wait in the queue"


def test_a_retake_and_an_overdue_patient(demo):
    owen = db.session.execute(select(Site).join(Site.patient).where(Patient.name == "Owen Hughes")).scalar_one()
    rejected = db.session.execute(select(Photo).where(Photo.site_id == owen.id, Photo.status == "rejected")
                                  ).scalar_one()
    retake = db.session.execute(select(Photo).where(Photo.site_id == owen.id, Photo.status == "done",
                                                    Photo.received_at > rejected.received_at)
                                .order_by(Photo.received_at).limit(1)).scalar_one()
    assert retake.received_at - rejected.received_at < timedelta(days=2)
    request = db.session.execute(select(OutboundMessage).where(OutboundMessage.purpose == "retake",
                                                               OutboundMessage.patient_id == owen.patient_id)
                                 ).scalar_one()
    assert request.status == "delivered" and rejected.received_at <= request.sent_at < retake.received_at
    ruth = db.session.execute(select(Site).join(Site.patient).where(Patient.name == "Ruth Okafor")).scalar_one()
    overdue = list(db.session.execute(select(PlanItem).join(FollowUpPlan).where(
        FollowUpPlan.site_id == ruth.id, PlanItem.status == "pending", PlanItem.due_date < utcnow().date())).scalars())
    assert len(overdue) == 1 and overdue[0].kind == "photo" and (utcnow().date() - overdue[0].due_date).days >= 7


def test_texts_went_out_and_were_delivered_on_their_dates(demo):
    texts = list(db.session.execute(select(OutboundMessage).where(OutboundMessage.purpose == "photo_due")).scalars())
    assert len(texts) >= 25 and {t.status for t in texts} == {"delivered"}
    assert max(t.sent_at for t in texts) - min(t.sent_at for t in texts) > timedelta(days=300)
    assert all("{upload-link:" in t.body for t in texts), "links are stored sealed, as the sweep stores them"
    assert scalar(select(func.count()).select_from(OutboundMessage)
                  .where(OutboundMessage.purpose.in_(["photo_heads_up", "visit_two_weeks"]))) >= 20
