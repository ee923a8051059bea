"""End to end in a real browser: the patient's link on a phone → upload → analysis → the alert in the queue →
the dermatologist opens it, sees both photos and the outline, resolves it → the queue no longer shows it."""
from __future__ import annotations

import re

from sqlalchemy import select

from followup.db import db
from followup.models import Alert, Photo
from followup.records import links
from tests.browser.conftest import DESK, enrolled_site, launch
from tests.conftest import PASSWORD
from tests.followup.cases import analyse, encode, reject, skin_image

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
def loaded(page, selector: str) -> bool:
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


def test_patient_upload_to_resolved_alert(browser, live_server, world, watch, shoot, tmp_path):
    site, baseline, token = enrolled_site(world)
    photo_file = tmp_path / "scar.jpg"
    photo_file.write_bytes(encode(skin_image(3000, 2250, seed=7, spot=60)))

    # The patient, on a phone, from the SMS link.
    phone = browser.new_context(**PHONE)
    page = watch.attach(phone.new_page())
    page.goto(f"{live_server}/u/{token}")
    assert page.locator("h1").inner_text() == "Photo of your scar"
    assert "left shoulder" in page.content()
    page.wait_for_function("() => document.getElementById('guide').naturalWidth > 0")
    shoot(page, "01-patient-link")
    page.set_input_files("#photo", str(photo_file))
    page.wait_for_selector("#preview:not([hidden]) .check-result.ok")
    assert "sharp and bright enough" in page.inner_text("#check")
    page.locator("fieldset.question", has_text="Has it grown?").get_by_text("Yes", exact=True).click()
    page.locator("fieldset.question", has_text="Does it itch?").get_by_text("No", exact=True).click()
    shoot(page, "02-patient-photo-checked")
    page.click("#send")
    page.wait_for_url(re.compile(r"/u/.+/sent/\d+$"))
    assert "Checking your photo" in page.inner_text("h1")
    shoot(page, "03-patient-checking")

    # The upload arrived downscaled by the page, with the answers; the pipeline's part is played here.
    db.session.expire_all()
    photo = db.session.execute(select(Photo).where(Photo.kind == "followup")).scalar_one()
    assert max(photo.width, photo.height) == 2048 and photo.grew is True and photo.itch is False
    analyse(photo, baseline, score=0.87, reasons=["new dark area next to the scar", "the patient says it grew"])
    page.wait_for_selector("text=Received, thank you", timeout=10_000)  # the page looked again by itself
    assert "score" not in page.content().lower()
    shoot(page, "04-patient-received")
    phone.close()

    # The dermatologist signs in and lands on the queue.
    desk = browser.new_context(**DESK)
    page = watch.attach(desk.new_page())
    page.goto(f"{live_server}/login")
    page.fill("#email", world.derm.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Triage queue')")
    row = page.locator("#queue-rows tr[data-alert]")
    assert row.count() == 1 and "Grace Hopper" in row.inner_text()
    page.wait_for_function("() => [...document.querySelectorAll('img.thumb')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    shoot(page, "05-queue")

    # The alert: both photos, the outline first, the other views by keyboard, then resolve by keyboard.
    page.click("a.open-alert")
    page.wait_for_selector("#resolve-form")
    page.wait_for_function("() => ['#img-baseline', 'img.ov-outline'].every(s => document.querySelector(s).complete)")
    assert loaded(page, "#img-baseline")
    outline = page.locator("img.ov-outline")
    assert outline.is_visible() and loaded(page, "img.ov-outline")
    assert not page.locator("img.ov-heatmap").is_visible()
    assert page.locator("#compare-block").is_visible()
    assert "new dark area next to the scar" in page.inner_text("#findings-title + ul")
    shoot(page, "06-alert-outline")
    page.keyboard.press("h")
    assert page.locator("img.ov-heatmap").is_visible() and not outline.is_visible()
    page.wait_for_function("() => document.querySelector('img.ov-heatmap').naturalWidth > 0")
    page.keyboard.press("b")
    assert page.is_checked("input[name=outcome][value=benign_change]")
    page.fill("#note", "Seborrhoeic keratosis beside the scar.")
    shoot(page, "07-alert-heatmap-benign")
    page.focus("#resolve-button")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Alert resolved: benign change.")
    assert page.locator("#queue-rows tr[data-alert]").count() == 0
    assert "Grace Hopper" not in page.inner_text("#queue-rows")
    shoot(page, "08-queue-empty")
    desk.close()

    db.session.expire_all()
    alert = db.session.execute(select(Alert)).scalar_one()
    assert (alert.status, alert.outcome) == ("resolved", "benign_change")
    assert watch.errors == [], watch.errors


def test_patient_without_javascript_and_a_rejected_photo(browser, live_server, world, watch, shoot, tmp_path):
    site, _, token = enrolled_site(world)
    photo_file = tmp_path / "dark.jpg"
    photo_file.write_bytes(encode(skin_image(800, 600, seed=3)))
    context = browser.new_context(java_script_enabled=False, **PHONE)
    page = watch.attach(context.new_page())
    page.goto(f"{live_server}/u/{token}")
    assert page.locator("#camera-offer").is_hidden()
    page.set_input_files("#photo", str(photo_file))
    page.locator("fieldset.question", has_text="Does it hurt?").get_by_text("Not sure", exact=True).click()
    page.click("#send")
    page.wait_for_url(re.compile(r"/sent/\d+$"))
    db.session.expire_all()
    photo = db.session.execute(select(Photo).where(Photo.kind == "followup")).scalar_one()
    reject(photo, ["too dark — turn on a light or move near a window"])
    page.reload()
    assert "We could not use this photo because" in page.content() and "too dark" in page.content()
    shoot(page, "01-patient-retake-no-js")
    page.get_by_role("link", name="Take the photo again").click()
    assert page.locator("h1").inner_text() == "Photo of your scar"
    assert watch.errors == [], watch.errors
    links.revoke_site_links([site.id])
    db.session.commit()
    page.reload()
    assert "This link no longer works" in page.inner_text("h1") and "+441234567890" in page.content()
    shoot(page, "02-patient-dead-link")
    context.close()
    # The dead link's page itself answers 410 Gone (Chromium logs that); nothing else may fail.
    assert all("status of 410" in e for e in watch.errors), watch.errors


def test_live_camera_with_see_through_guide(playwright, live_server, world, watch, shoot):
    """Chromium's fake camera stands in for the phone's: open it, fade the guide, take the photo, send it."""
    _, _, token = enrolled_site(world)
    browser = launch(playwright, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
    try:
        context = browser.new_context(**PHONE)
        context.grant_permissions(["camera"], origin=live_server)
        page = watch.attach(context.new_page())
        page.goto(f"{live_server}/u/{token}")
        page.click("#camera-open")
        page.wait_for_function("() => document.getElementById('camera-video').videoWidth > 0")
        page.fill("#ghost-opacity", "60")
        page.dispatch_event("#ghost-opacity", "input")
        assert page.eval_on_selector("#ghost", "g => g.style.opacity") == "0.6"
        shoot(page, "01-camera-with-guide")
        page.click("#snap")
        page.wait_for_selector("#preview:not([hidden]) .check-result")
        assert page.locator("#camera").is_hidden()
        shoot(page, "02-camera-photo")
        page.click("#send")
        page.wait_for_url(re.compile(r"/sent/\d+$"))
    finally:
        browser.close()
    db.session.expire_all()
    photo = db.session.execute(select(Photo).where(Photo.kind == "followup")).scalar_one()
    assert photo.width > 0 and photo.status == "queued"
    assert watch.errors == [], watch.errors
