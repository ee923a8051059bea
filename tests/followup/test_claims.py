"""Claims on alerts: a dermatologist who leaves or goes quiet never holds a case for good (admin override,
release on deactivation, stale claims back in the queue, urgent texts to colleagues), and two colleagues
claiming or resolving at once never both win."""
from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from followup.db import db, utcnow
from followup.models import Alert, AuditEvent, OutboundMessage, User
from followup.outreach import sweep
from followup.records.accounts import create_user
from followup.triage import alerts
from followup.triage.alerts import AlertConflict
from tests.conftest import PASSWORD


def login(client, email="derm@north.test"):
    assert client.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302


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


def test_an_admin_reassigns_or_releases_a_colleagues_claim_and_it_is_audited(app, client, world, colleague,
                                                                             alert_id):
    login(client)
    client.post(f"/alerts/{alert_id}/claim")
    assert current(alert_id).claimed_by_id == world.derm.id
    admin = app.test_client()
    login(admin, "admin@north.test")
    page = admin.get(f"/alerts/{alert_id}").get_data(as_text=True)
    assert 'id="reassign-form"' in page and "Dr Two" in page

    response = admin.post(f"/alerts/{alert_id}/reassign", data={"to": str(colleague.id)}, follow_redirects=True)
    assert "Given to Dr Two" in response.get_data(as_text=True)
    assert (current(alert_id).status, current(alert_id).claimed_by_id) == ("claimed", colleague.id)
    assert audit_details("reassign_alert") == [{"claimed_by": world.derm.id, "to": colleague.id,
                                                "reason": "admin override"}]
    other = app.test_client()
    login(other, "derm2@north.test")
    assert other.post(f"/alerts/{alert_id}/resolve", data={"outcome": "no_change"}).headers["Location"] == "/queue"
    assert current(alert_id).resolved_by_id == colleague.id

    second = Alert(clinic_id=world.clinic.id, site_id=current(alert_id).site_id, priority=3, reasons=["y"])
    db.session.add(second)
    db.session.commit()
    client.post(f"/alerts/{second.id}/claim")
    admin.post(f"/alerts/{second.id}/reassign", data={"to": ""})
    assert (current(second.id).status, current(second.id).claimed_by_id) == ("open", None)
    assert audit_details("release_alert") == [{"claimed_by": world.derm.id, "to": None, "reason": "admin override"}]
    # Only admins override; only to an active dermatologist of the clinic; a stale form changes nothing.
    assert client.post(f"/alerts/{second.id}/reassign", data={"to": ""}).status_code == 403
    assert admin.post(f"/alerts/{second.id}/reassign", data={"to": str(world.other_derm.id)}).status_code == 422
    assert admin.post(f"/alerts/{second.id}/reassign", data={"to": "99999999999999999999"}).status_code == 400
    assert admin.post(f"/alerts/{second.id}/reassign", data={"to": "²"}).status_code == 400  # a digit to isdigit()
    assert "not claimed" in admin.post(f"/alerts/{second.id}/reassign", data={"to": ""},
                                       follow_redirects=True).get_data(as_text=True)


def test_deactivating_a_dermatologist_puts_their_claims_back_in_the_queue(app, client, world, alert_id):
    login(client)
    client.post(f"/alerts/{alert_id}/claim")
    admin = app.test_client()
    login(admin, "admin@north.test")
    assert admin.post(f"/users/{world.derm.id}/active", data={"active": "0"}).status_code == 303
    alert = current(alert_id)
    assert (alert.status, alert.claimed_by_id, alert.claimed_at) == ("open", None, None)
    assert audit_details("release_alert") == [{"claimed_by": world.derm.id, "reason": "claimer deactivated"}]
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "release_alert")).scalar_one()
    assert event.user_id == world.admin.id and event.record_id == alert_id


def test_a_stale_claim_goes_back_to_the_queue_at_the_sweep(app, runner, world, colleague, alert_id, site_id):
    app.config["CLAIM_STALE_HOURS"] = 24
    now = utcnow()
    fresh = Alert(clinic_id=world.clinic.id, site_id=site_id, kind="unreadable", priority=2,  # one open per kind
                  reasons=["fresh"])
    db.session.add(fresh)
    db.session.commit()
    alerts.claim(db.session.get(Alert, alert_id), world.derm)
    alerts.claim(fresh, colleague)
    db.session.get(Alert, alert_id).claimed_at = now - timedelta(hours=25)
    db.session.get(Alert, fresh.id).claimed_at = now - timedelta(hours=23)
    db.session.commit()

    result = runner.invoke(args=["reminders", "dispatch", "--now", now.isoformat()])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["claims_released"] == 1
    assert (current(alert_id).status, current(alert_id).claimed_by_id) == ("open", None)
    assert (current(fresh.id).status, current(fresh.id).claimed_by_id) == ("claimed", colleague.id)
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "release_alert")).scalar_one()
    assert event.actor == "system" and event.detail == {"claimed_by": world.derm.id, "reason": "stale claim"}
    assert "claims_released" not in sweep.dispatch(now)  # nothing left to release


def test_urgent_texts_for_a_departed_dermatologists_site_go_to_the_clinics_other_dermatologists(app, world,
                                                                                                colleague, site_id):
    world.derm.phone = "+447700900111"
    world.other_derm.phone = "+447700900333"  # another clinic: never told
    create_user(world.clinic, email="nophone@north.test", password=PASSWORD, role="dermatologist")
    world.derm.active = False
    db.session.commit()
    alert = alerts.raise_alert(clinic_id=world.clinic.id, site_id=site_id, photo_id=None, kind="change",
                               priority=1, score=0.9, reasons=["new pigment"])
    db.session.commit()
    alerts.raise_alert(clinic_id=world.clinic.id, site_id=site_id, photo_id=None, kind="change", priority=1,
                       score=0.9, reasons=["new pigment"])  # the job ran twice: still one text each
    db.session.commit()
    texts = db.session.execute(select(OutboundMessage).where(OutboundMessage.purpose == "alert_urgent")).scalars().all()
    assert [(m.to, m.user_id) for m in texts] == [("+447700900222", colleague.id)]
    assert f"/alerts/{alert.id}" in texts[0].body and "Grace" not in texts[0].body


def _at_once(app, work: list) -> list[object]:
    """Run each ``work`` item (a function of nothing) in its own thread and app context — as two requests
    would — after both have read the alert; returns each result or the HTTP status of the conflict it raised."""
    ready = threading.Barrier(len(work), timeout=10)  # a failing side never leaves the other waiting
    results: list[object] = [None] * len(work)

    def run(i: int) -> None:
        with app.app_context():
            try:
                results[i] = work[i](ready)
            except AlertConflict as exc:
                results[i] = exc.status
            finally:
                db.session.remove()

    # Daemon threads: never hold pytest at exit.
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(work))]
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
    with pytest.raises(AlertConflict, match="Dr Two has already claimed"):
        alerts.claim(seen, world.derm)
    with pytest.raises(AlertConflict):
        alerts.resolve(seen, world.derm, outcome="no_change", note=None)
    assert (current(alert_id).status, current(alert_id).claimed_by_id) == ("claimed", colleague.id)


@pytest.fixture
def released_before_the_reload(monkeypatch, colleague, alert_id):
    """The colleague's claim, released between a losing UPDATE and the reload of the alert."""
    alerts.claim(db.session.get(Alert, alert_id), colleague)
    reload = db.session.refresh

    def release_then_reload(instance, *args, **kwargs):
        if isinstance(instance, Alert):
            db.session.execute(Alert.__table__.update().where(Alert.__table__.c.id == alert_id)
                               .values(status="open", claimed_by_id=None, claimed_at=None))
        return reload(instance, *args, **kwargs)

    monkeypatch.setattr(db.session, "refresh", release_then_reload)


@pytest.mark.parametrize("act", [
    lambda alert, user: alerts.claim(alert, user),
    lambda alert, user: alerts.resolve(alert, user, outcome="no_change", note=None),
], ids=["claim", "resolve"])
def test_a_claim_released_while_losing_is_a_conflict_to_retry(world, alert_id, act, released_before_the_reload):
    with pytest.raises(AlertConflict, match="changed meanwhile; try again"):
        act(db.session.get(Alert, alert_id), world.derm)


def test_a_claim_and_its_audit_event_are_one_transaction(monkeypatch, world, alert_id):
    def failing_audit(action, *args, **kwargs):
        raise RuntimeError(f"audit store down: {action}")

    monkeypatch.setattr(alerts.audit, "_add", failing_audit)
    with pytest.raises(RuntimeError, match="claim_alert"):
        alerts.claim(db.session.get(Alert, alert_id), world.derm)
    db.session.rollback()
    assert (current(alert_id).status, current(alert_id).claimed_by_id) == ("open", None)


@pytest.mark.parametrize("via", ["web", "api"])
def test_a_claim_is_audited_once_whichever_way_it_came(client, world, alert_id, via):
    if via == "web":
        login(client)
        client.post(f"/alerts/{alert_id}/claim")
    else:
        assert client.post(f"/api/v1/alerts/{alert_id}/claim",
                           headers=world.headers(client, "derm@north.test")).status_code == 200
    events = db.session.execute(select(AuditEvent).where(AuditEvent.action == "claim_alert")).scalars().all()
    assert [(e.user_id, e.record_id) for e in events] == [(world.derm.id, alert_id)]
