"""Claims on alerts: two colleagues claiming or resolving at once never both win."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from followup import alerts
from followup.accounts import create_user
from followup.db import db, utcnow
from followup.models import Alert, AuditEvent, OutboundMessage, User
from tests.conftest import PASSWORD


@pytest.fixture
def colleague(world):
    user = create_user(world.clinic, email="derm2@north.test", password=PASSWORD, role="dermatologist",
                       name="Dr Two", phone="+447700900222")
    db.session.commit()
    return user


@pytest.fixture
def alert_id(world, site_id) -> int:
    alert = Alert(clinic_id=world.clinic.id, site_id=site_id, priority=2, recurrence_score=0.6, reasons=["x"])
    db.session.add(alert)
    db.session.commit()
    return alert.id


def current(alert_id: int) -> Alert:
    db.session.expire_all()
    return db.session.get(Alert, alert_id)


def audit_details(action: str) -> list[dict]:
    return [e.detail for e in db.session.execute(select(AuditEvent).where(AuditEvent.action == action)).scalars()]


def _at_once(app, work: list) -> list[object]:
    """Run each ``work`` item (a function of nothing) in its own thread and app context — as two requests
    would — after both have read the alert; returns each result or the HTTP status it aborted with."""
    ready = threading.Barrier(len(work))
    results: list[object] = [None] * len(work)

    def run(i: int) -> None:
        with app.app_context():
            try:
                results[i] = work[i](ready)
            except HTTPException as exc:
                results[i] = exc.code
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_two_colleagues_claiming_at_once_do_not_both_win(app, world, colleague, alert_id):
    def claimer(user_id: int):
        def work(ready):
            user = db.session.get(User, user_id)
            alert = alerts.alert_for(user, alert_id)  # both read the alert open...
            ready.wait()  # ...before either claims it
            return alerts.claim(alert, user).claimed_by_id

        return work

    results = _at_once(app, [claimer(world.derm.id), claimer(colleague.id)])
    assert sorted(results, key=str) == sorted([409, current(alert_id).claimed_by_id], key=str), results


def test_two_colleagues_resolving_at_once_do_not_both_win(app, world, colleague, alert_id):
    def resolver(user_id: int, outcome: str):
        def work(ready):
            user = db.session.get(User, user_id)
            alert = alerts.alert_for(user, alert_id)
            ready.wait()
            return alerts.resolve(alert, user, outcome=outcome, note=None).outcome

        return work

    results = _at_once(app, [resolver(world.derm.id, "rephoto"), resolver(colleague.id, "biopsy")])
    winner = current(alert_id)
    assert sorted(results, key=str) == sorted([409, winner.outcome], key=str), results
    assert len(audit_details("resolve_alert")) == 1
    retakes = db.session.execute(select(OutboundMessage).where(OutboundMessage.purpose == "retake")).scalars().all()
    assert len(retakes) == (1 if winner.outcome == "rephoto" else 0)


def test_a_claim_taken_after_the_page_was_read_is_not_overwritten(world, colleague, alert_id):
    """The same race without threads: the alert object is a copy read before the colleague's claim."""
    seen = db.session.get(Alert, alert_id)
    with db.engine.begin() as other:
        other.execute(Alert.__table__.update().where(Alert.__table__.c.id == alert_id)
                      .values(status="claimed", claimed_by_id=colleague.id, claimed_at=utcnow()))
    with pytest.raises(HTTPException) as refused:
        alerts.claim(seen, world.derm)
    assert refused.value.code == 409 and "Dr Two has already claimed" in refused.value.description
    with pytest.raises(HTTPException) as refused:
        alerts.resolve(seen, world.derm, outcome="no_change", note=None)
    assert refused.value.code == 409
    assert (current(alert_id).status, current(alert_id).claimed_by_id) == ("claimed", colleague.id)
