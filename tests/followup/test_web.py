"""The staff pages: triage queue, alert page and its actions, images, clinic pages; their security."""
from __future__ import annotations

import html
import io
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import delete, event, func, select

from followup.db import db, utcnow
from followup.models import Alert, AuditEvent, InboundMessage, OutboundMessage, Patient, Photo, PlanItem, Site
from followup.records import links
from followup.records.patients import create_patient, create_site
from tests.conftest import PASSWORD, jpeg_bytes
from tests.followup.cases import flagged_case
from tests.followup.helpers import login


@pytest.fixture
def case(world, site_id):
    site = db.session.get(Site, site_id)
    baseline, photo, analysis = flagged_case(site)
    alert = db.session.execute(select(Alert).where(Alert.photo_id == photo.id)).scalar_one()
    return {"site": site, "baseline": baseline, "photo": photo, "analysis": analysis, "alert": alert}


def audits(action: str) -> int:
    return db.session.execute(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)).scalar_one()


def test_dermatologist_lands_on_the_queue_with_patient_names(client, case):
    response = login(client)
    assert response.headers["Location"] == "/"
    page = client.get("/")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Triage queue" in text
    assert "Grace Hopper" in text and "left shoulder" in text and "new dark area next to the scar" in text
    assert f'/photos/{case["photo"].id}/thumb' in text
    assert f'/alerts/{case["alert"].id}' in text


def test_queue_orders_and_filters(client, world, case):
    other = create_patient(world.clinic, name="Ada Lovelace", phone="+447700900111", sms_consent=True)
    site = create_site(other, body_site="scalp", diagnosis="melanoma", excision_date=date.today() - timedelta(days=90))
    db.session.commit()
    _, photo, _ = flagged_case(site, priority=2, score=0.5)
    late = db.session.execute(select(Alert).where(Alert.photo_id == photo.id)).scalar_one()
    late.created_at = utcnow() - timedelta(days=10)
    db.session.commit()
    login(client)
    text = client.get("/queue").get_data(as_text=True)
    assert text.index("Grace Hopper") < text.index("Ada Lovelace")  # priority 1 first
    assert "Ada Lovelace" not in client.get("/queue?priority=1").get_data(as_text=True)
    assert "Grace Hopper" not in client.get("/queue?diagnosis=melanoma").get_data(as_text=True)
    overdue = client.get("/queue?overdue=1").get_data(as_text=True)
    assert "Ada Lovelace" in overdue and "Grace Hopper" not in overdue
    mine = client.get(f"/queue?member={world.derm.id}").get_data(as_text=True)
    assert "Grace Hopper" in mine and "Ada Lovelace" not in mine
    assert client.get("/queue?priority=x&page=-3&claimed=bogus").status_code == 200  # bad filters are ignored


def test_queue_rows_fragment_does_not_extend_the_idle_session(client, case):
    login(client)
    assert "Set-Cookie" in client.get("/queue").headers  # a person's request moves the expiry on
    response = client.get("/queue/rows")
    assert response.status_code == 200 and "Grace Hopper" in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers, "an auto-refresh must not keep an idle session alive"


def test_claim_keeps_colleagues_apart(app, client, world, case):
    from followup.records.accounts import create_user

    create_user(world.clinic, email="derm2@north.test", password=PASSWORD, role="dermatologist", name="Dr Two")
    db.session.commit()
    alert_id = case["alert"].id
    login(client)
    response = client.post(f"/alerts/{alert_id}/claim", data={"next": "/queue?priority=1"})
    assert response.status_code == 303 and response.headers["Location"] == "/queue?priority=1"
    assert client.post(f"/alerts/{alert_id}/claim", data={"next": "https://evil.example/"}).headers["Location"] \
        == f"/alerts/{alert_id}"
    db.session.expire_all()
    assert db.session.get(Alert, alert_id).status == "claimed"
    other = app.test_client()
    login(other, "derm2@north.test")
    page = other.post(f"/alerts/{alert_id}/claim", follow_redirects=True).get_data(as_text=True)
    assert "has already claimed" in page
    response = other.post(f"/alerts/{alert_id}/resolve", data={"outcome": "no_change"}, follow_redirects=True)
    assert "has claimed this case" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Alert, alert_id).status == "claimed"
    client.post(f"/alerts/{alert_id}/claim", data={"release": "1"})
    db.session.expire_all()
    assert db.session.get(Alert, alert_id).status == "open"


def test_alert_page_shows_both_photos_overlays_answers_and_timeline(client, case):
    login(client)
    before = audits("view_alert")
    response = client.get(f"/alerts/{case['alert'].id}")
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f'id="img-baseline" src="/photos/{case["baseline"].id}/image"' in text
    analysis_id = case["analysis"].id
    for name in ("aligned", "outline", "heatmap", "saliency"):
        assert f"/analyses/{analysis_id}/overlay/{name}" in text
    assert re.search(r'id="view-outline"[^>]*checked', text), "the outline is shown first"
    assert "new pigment area of" in text and "+35 % in size" in text  # measurements in words
    assert "Has it grown?" in text and "Yes" in text
    assert '<svg class="chart"' in text and "Timeline of this site" in text
    assert 'id="resolve-form"' in text and 'name="csrf_token"' in text
    assert audits("view_alert") == before + 1


def test_images_are_private_audited_and_clinic_scoped(app, client, world, case):
    login(client)
    for url, action, mimetype in (
        (f"/photos/{case['baseline'].id}/image", "view_photo_image", "image/jpeg"),
        (f"/photos/{case['photo'].id}/thumb", "view_photo_thumb", "image/jpeg"),
        (f"/analyses/{case['analysis'].id}/overlay/outline", "view_overlay", "image/jpeg"),
        (f"/analyses/{case['analysis'].id}/overlay/heatmap", "view_overlay", "image/png"),
    ):
        before = audits(action)
        response = client.get(url)
        assert response.status_code == 200 and response.mimetype == mimetype, url
        assert response.headers["Cache-Control"] == "private, no-store"
        assert audits(action) == before + 1
    assert client.get(f"/analyses/{case['analysis'].id}/overlay/nope").status_code == 404
    stranger = app.test_client()
    assert stranger.get(f"/photos/{case['baseline'].id}/image").status_code == 302  # to the sign-in page
    login(stranger, "derm@south.test")
    for url in (f"/photos/{case['baseline'].id}/image", f"/analyses/{case['analysis'].id}/overlay/aligned",
                f"/alerts/{case['alert'].id}", f"/patients/{case['site'].patient_id}"):
        response = stranger.get(url)
        assert response.status_code == 404 and "Grace Hopper" not in response.get_data(as_text=True), url
    assert "Grace Hopper" not in stranger.get("/queue").get_data(as_text=True)


def test_resolving_takes_the_alert_off_the_queue(client, case):
    login(client)
    response = client.post(f"/alerts/{case['alert'].id}/resolve", data={"outcome": "benign_change", "note": "seb K"})
    assert response.status_code == 303 and response.headers["Location"] == "/queue"
    db.session.expire_all()
    alert = db.session.get(Alert, case["alert"].id)
    assert (alert.status, alert.outcome, alert.note) == ("resolved", "benign_change", "seb K")
    assert "Grace Hopper" not in client.get("/queue").get_data(as_text=True)
    assert audits("resolve_alert") == 1
    page = client.get(f"/alerts/{alert.id}").get_data(as_text=True)
    assert "Resolved as <strong>Benign change</strong>" in page


def test_request_retake_messages_the_patient(client, case):
    login(client)
    client.post(f"/alerts/{case['alert'].id}/resolve", data={"outcome": "rephoto", "retake_reason": "blur"})
    db.session.expire_all()
    assert db.session.get(Alert, case["alert"].id).outcome == "rephoto"
    message = db.session.execute(select(OutboundMessage)).scalar_one()
    assert message.purpose == "retake" and message.to == "+447700900456" and message.status == "pending"
    body = links.open_links(message.body)  # stored sealed; opened as it leaves
    assert "not sharp enough" in body and "https://scarwatch.test/u/" in body
    words = re.sub(r"https://\S+", "", body).lower()  # the link's random token could spell anything
    assert "melanoma" not in words and "bcc" not in words


def test_book_a_visit_adds_it_to_the_plan(client, case):
    login(client)
    when = date.today() + timedelta(days=9)
    client.post(f"/alerts/{case['alert'].id}/resolve", data={"outcome": "visit", "visit_date": when.isoformat()})
    visits = db.session.execute(
        select(PlanItem).where(PlanItem.kind == "visit", PlanItem.due_date == when)).scalars().all()
    assert len(visits) == 1


def test_admin_sees_but_cannot_resolve(client, case):
    login(client, "admin@north.test")
    text = client.get(f"/alerts/{case['alert'].id}").get_data(as_text=True)
    assert "Only dermatologists resolve alerts" in text
    assert client.post(f"/alerts/{case['alert'].id}/resolve", data={"outcome": "no_change"}).status_code == 403
    assert client.post(f"/alerts/{case['alert'].id}/claim").status_code == 403


def test_forms_need_the_csrf_token(app, client, case):
    login(client)
    app.config["WTF_CSRF_ENABLED"] = True
    assert client.post(f"/alerts/{case['alert'].id}/resolve", data={"outcome": "no_change"}).status_code == 400
    page = client.get(f"/alerts/{case['alert'].id}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(f"/alerts/{case['alert'].id}/resolve", data={"outcome": "no_change", "csrf_token": token})
    assert response.status_code == 303


STAFF_PAGES = ["/queue", "/patients", "/patients/new", "/patients/{patient}", "/overdue", "/messages", "/inbox",
               "/performance"]


@pytest.mark.parametrize("path", STAFF_PAGES + ["/users"])
def test_staff_pages_need_sign_in(client, case, path):
    response = client.get(path.format(patient=case["site"].patient_id))
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_staff_pages_render_with_csp_and_no_inline_code(client, case, path):
    login(client)
    response = client.get(path.format(patient=case["site"].patient_id))
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=)", text), "inline script"
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", text), "inline style or event handler"


@pytest.mark.parametrize("path", STAFF_PAGES + ["/users"])
def test_staff_pages_are_never_cached(client, case, path):
    login(client, "admin@north.test")
    response = client.get(path.format(patient=case["site"].patient_id))
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]


def test_api_answers_are_never_cached_but_static_files_may_be(client, world, case):
    response = client.get("/api/v1/alerts", headers=world.headers(client, "derm@north.test"))
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    static = client.get("/static/scarwatch.css")
    assert static.status_code == 200
    assert "no-store" not in static.headers.get("Cache-Control", "")


def test_users_page_is_for_admins(client, world):
    login(client)
    assert client.get("/users").status_code == 403
    client.post("/logout")
    login(client, "admin@north.test")
    assert "derm@north.test" in client.get("/users").get_data(as_text=True)
    response = client.post("/users", data={"email": "new@north.test", "password": "short", "role": "dermatologist"})
    assert response.status_code == 400 and "12 characters" in response.get_data(as_text=True)
    client.post("/users", data={"email": "new@north.test", "password": "a-long-enough-password",
                                "role": "dermatologist"})
    from followup.models import User

    new = db.session.execute(select(User).where(User.email == "new@north.test")).scalar_one()
    assert new.clinic_id == world.clinic.id
    client.post(f"/users/{new.id}/active", data={"active": "0"})
    db.session.expire_all()
    assert db.session.get(User, new.id).active is False
    assert client.post(f"/users/{world.other_derm.id}/active", data={"active": "0"}).status_code == 404


def test_enrol_a_patient_with_a_baseline_photo(client, world):
    login(client)
    response = client.post("/patients/new", content_type="multipart/form-data", data={
        "name": "Alan Turing", "phone": "+447700900777", "sms_consent": "on", "body_site": "right forearm",
        "diagnosis": "scc", "excision_date": (date.today() - timedelta(days=7)).isoformat(),
        "dermatologist": str(world.derm.id), "baseline": (io.BytesIO(jpeg_bytes()), "b.jpg"),
    })
    assert response.status_code == 303
    patient = db.session.execute(select(Patient).where(Patient.name == "Alan Turing")).scalar_one()
    site = patient.sites[0]
    assert site.dermatologist_id == world.derm.id
    assert db.session.execute(select(Photo).where(Photo.site_id == site.id)).scalar_one().kind == "baseline"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "right forearm" in page and "Save plan" in page
    bad = client.post("/patients/new", data={"name": "", "phone": "07700", "diagnosis": "x"})
    assert bad.status_code == 400 and "Enter the patient" in bad.get_data(as_text=True)


@pytest.mark.parametrize("excision, words", [("2062-03-01", "cannot be in the future"),
                                               ("9999-12-31", "cannot be in the future"),
                                               ("0001-01-01", "cannot be before 1900")])
def test_enrolment_refuses_an_impossible_excision_date_and_enrols_no_one(client, world, excision, words):
    login(client)
    response = client.post("/patients/new", content_type="multipart/form-data", data={
        "name": "Ada Lovelace", "phone": "+447700900778", "body_site": "back", "diagnosis": "bcc",
        "excision_date": excision, "baseline": (io.BytesIO(jpeg_bytes()), "b.jpg"),
    })
    assert response.status_code == 400 and words in response.get_data(as_text=True)
    assert db.session.execute(select(Patient).where(Patient.name == "Ada Lovelace")).scalar_one_or_none() is None


def test_enrolment_checks_with_the_apis_schemas_shows_each_message_by_its_field_and_enrols_no_one(client, world):
    """The page and POST /api/v1/patients share one set of rules and words (followup/api/schemas.py)."""
    login(client)
    patients_before = db.session.execute(select(func.count()).select_from(Patient)).scalar_one()
    response = client.post("/patients/new", content_type="multipart/form-data", data={
        "name": "  ", "phone": "07700 900123", "date_of_birth": "2999-01-01", "body_site": "", "diagnosis": "wart",
        "stage": "x" * 21, "excision_date": "yesterday"})
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 400
    for field, words in [("name", "Enter the patient's name."),
                         ("phone", "The phone number must be in E.164 form, e.g. +447700900123."),
                         ("date_of_birth", "The date of birth cannot be in the future."),
                         ("body_site", "Say where the scar is, e.g. left shoulder."),
                         ("diagnosis", "Choose a diagnosis"), ("stage", "20 characters at most"),
                         ("excision_date", "Enter the excision date as YYYY-MM-DD."),
                         ("baseline", "Add the baseline photo of the scar.")]:
        assert re.search(f'id="{field}-error">[^<]*{re.escape(words)}', page), field
    assert db.session.execute(select(func.count()).select_from(Patient)).scalar_one() == patients_before
    api = client.post("/api/v1/patients", headers=world.headers(client, "derm@north.test"),
                      json={"name": "A", "phone": "07700 900123", "sms_consent": True})
    assert "phone: The phone number must be in E.164 form, e.g. +447700900123." in api.get_json()["error"]["message"]


def test_a_new_site_missing_its_fields_is_refused_with_the_schemas_words(client, case):
    login(client)
    response = client.post(f"/patients/{case['site'].patient_id}/sites", data={"diagnosis": ""}, follow_redirects=True)
    page = html.unescape(response.get_data(as_text=True))
    assert "Say where the scar is" in page and "Choose a diagnosis." in page and "Enter the excision date." in page


def test_a_new_site_with_a_future_excision_date_is_refused_with_the_reason(client, case):
    login(client)
    patient_id = case["site"].patient_id
    sites_before = db.session.execute(select(func.count()).select_from(Site)).scalar_one()
    response = client.post(f"/patients/{patient_id}/sites", data={
        "body_site": "scalp", "diagnosis": "bcc", "excision_date": "9999-12-31"}, follow_redirects=True)
    assert response.status_code == 200 and "cannot be in the future" in response.get_data(as_text=True)
    assert db.session.execute(select(func.count()).select_from(Site)).scalar_one() == sites_before


@pytest.mark.parametrize("path", ["/patients?page=99999999999999999999", "/messages?page=99999999999999999999",
                                  "/queue?page=99999999999999999999", "/queue?member=99999999999999999999",
                                  "/queue?member=-5"])
def test_huge_page_and_id_parameters_show_a_page_not_a_server_error(client, case, path):
    login(client)
    assert client.get(path).status_code == 200


def test_patient_search_is_a_post_so_names_stay_out_of_urls(client, case):
    login(client)
    text = client.post("/patients", data={"q": "hopper"}).get_data(as_text=True)
    assert "Grace Hopper" in text
    assert "Grace Hopper" not in client.post("/patients", data={"q": "zzz"}).get_data(as_text=True)


def test_plan_can_be_edited(client, case):
    login(client)
    site = case["site"]
    item = site_plan_items(site)[0]
    new_due = item.due_date + timedelta(days=3)
    client.post(f"/sites/{site.id}/plan", data={f"due-{item.id}": new_due.isoformat(), f"status-{item.id}": "done",
                                                "new_kind": "visit", "new_due": "2031-01-02"})
    db.session.expire_all()
    item = db.session.get(PlanItem, item.id)
    assert item.due_date == new_due and item.status == "done"
    assert any(i.due_date == date(2031, 1, 2) for i in site_plan_items(site))


@pytest.mark.parametrize("typed, words", [("9999-12-31", "more than 10 years ahead"),
                                         ("0001-01-01", "cannot be before the excision date")])
def test_plan_editor_refuses_an_impossible_date_with_the_reason_and_saves_nothing(client, case, typed, words):
    login(client)
    site = case["site"]
    item = site_plan_items(site)[0]
    before, count = (item.due_date, item.status), len(site_plan_items(site))
    for data in ({f"due-{item.id}": typed, f"status-{item.id}": "done"}, {"new_kind": "visit", "new_due": typed}):
        response = client.post(f"/sites/{site.id}/plan", data=data)
        assert response.status_code == 400 and words in response.get_data(as_text=True)
    db.session.expire_all()
    item = db.session.get(PlanItem, item.id)
    assert (item.due_date, item.status) == before and len(site_plan_items(site)) == count


def test_a_visit_booked_on_an_impossible_date_is_refused_and_the_alert_stays_open(client, case):
    login(client)
    response = client.post(f"/alerts/{case['alert'].id}/resolve", data={"outcome": "visit", "visit_date": "9999-12-31"},
                           follow_redirects=True)
    assert "more than 10 years ahead" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Alert, case["alert"].id).status != "resolved"
    assert db.session.execute(select(PlanItem).where(PlanItem.due_date == date(9999, 12, 31))).first() is None


def site_plan_items(site):
    from followup.records.patients import site_plan

    return site_plan(site).items


def test_messages_inbox_overdue_and_performance(client, world, case):
    patient_id = case["site"].patient_id
    db.session.add(OutboundMessage(clinic_id=world.clinic.id, patient_id=patient_id, idempotency_key="k1",
                                   to="+447700900456", body="Photo please: https://scarwatch.test/u/SECRETTOKEN",
                                   purpose="reminder", status="delivered"))
    db.session.add(InboundMessage(clinic_id=world.clinic.id, patient_id=patient_id, twilio_sid="SM1",
                                  from_number="+447700900456", body="It itches since Monday", intent="text"))
    item = site_plan_items(case["site"])[0]
    item.due_date = date.today() - timedelta(days=5)
    resolved = Alert(clinic_id=world.clinic.id, site_id=case["site"].id, priority=2, recurrence_score=0.9,
                     status="resolved", outcome="biopsy")
    db.session.add(resolved)
    db.session.commit()
    login(client)
    messages = client.get("/messages").get_data(as_text=True)
    assert "delivered" in messages and "SECRETTOKEN" not in messages and "Grace Hopper" in messages
    inbox = client.get("/inbox").get_data(as_text=True)
    assert "It itches since Monday" in inbox
    message_id = db.session.execute(select(InboundMessage.id)).scalar_one()
    client.post(f"/inbox/{message_id}/handled")
    db.session.expire_all()
    assert db.session.get(InboundMessage, message_id).handled_at is not None
    overdue = client.get("/overdue").get_data(as_text=True)
    assert "Grace Hopper" in overdue and "5 days" in overdue
    performance = client.get("/performance").get_data(as_text=True)
    assert "1 resolved alert;" in performance and "100 %" in performance


def test_new_upload_link_is_shown_once_and_revokes_older_ones(client, case):
    login(client)
    response = client.post(f"/sites/{case['site'].id}/link")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert "https://scarwatch.test/u/" in response.get_data(as_text=True)


def test_overdue_page_lists_visits_due_soon(client, case):
    visit = next(i for i in site_plan_items(case["site"]) if i.kind == "visit")
    visit.due_date = date.today() + timedelta(days=6)
    db.session.commit()
    login(client)
    page = client.get("/overdue").get_data(as_text=True)
    soon = page.split("Clinic visits due in the next two weeks")[1]
    assert "Grace Hopper" in soon and visit.due_date.strftime("%Y") in soon


def test_overdue_page_is_paged_and_reads_only_the_clinics_page(client, world, case):
    from followup.web.clinic import PAGE_SIZE

    plan_id = site_plan_items(case["site"])[0].plan_id
    db.session.execute(delete(PlanItem).where(PlanItem.plan_id == plan_id))
    db.session.add_all(PlanItem(plan_id=plan_id, kind="visit", due_date=date.today() - timedelta(days=100 - n))
                       for n in range(PAGE_SIZE + 5))
    # Another clinic's site with photos: its photos are no business of this page.
    other = create_site(create_patient(world.other_clinic, name="Alan Turing", phone="+447700900999",
                                       sms_consent=True), body_site="nose", diagnosis="bcc",
                        excision_date=date.today() - timedelta(days=30))
    db.session.add_all(Photo(site_id=other.id, kind="followup", sha256=f"{n:064d}", storage_key=f"{n}.jpg",
                             content_type="image/jpeg", size_bytes=1, width=1, height=1) for n in range(3))
    db.session.commit()
    login(client)
    loaded, statements = [], []

    def on_load(item, _context):
        loaded.append(item)

    def on_execute(_conn, _cursor, statement, *_):
        statements.append(statement)

    event.listen(PlanItem, "load", on_load)
    event.listen(db.engine, "before_cursor_execute", on_execute)
    try:
        first = client.get("/overdue").get_data(as_text=True)
    finally:
        event.remove(PlanItem, "load", on_load)
        event.remove(db.engine, "before_cursor_execute", on_execute)
    assert first.count("100 days") == 1 and first.count(" days</td>") == PAGE_SIZE
    assert "/overdue?page=2" in first
    assert len(loaded) <= PAGE_SIZE + 1, "a page loads a page of plan items, not every past one"
    photo_reads = [s for s in statements if re.search(r"FROM photo\b", s)]
    assert photo_reads and all("photo.site_id IN" in s for s in photo_reads), photo_reads
    second = client.get("/overdue?page=2").get_data(as_text=True)
    assert second.count(" days</td>") == 5 and "/overdue?page=1" in second and "/overdue?page=3" not in second


def test_overdue_page_title_is_plain(client, case):
    login(client)
    page = client.get("/overdue").get_data(as_text=True)
    assert "<title>Overdue · Scar Watch</title>" in page


def test_patient_page_links_the_printable_sticker(client, case):
    login(client)
    text = client.get(f"/patients/{case['site'].patient_id}").get_data(as_text=True)
    assert 'href="/reference-sticker.pdf"' in text and 'href="/reference-sticker.svg"' in text
    assert client.get("/reference-sticker.pdf").status_code == 200
