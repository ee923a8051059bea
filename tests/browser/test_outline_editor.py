"""Staff outline the scar on the baseline in a real browser: a click on the scar (with and without script) and
an outline drawn point by point."""
from __future__ import annotations

import numpy as np

from followup.db import db
from followup.models import Site
from registration import polygon_to_mask
from tests.browser.conftest import DESK, enrolled_site
from tests.conftest import PASSWORD


def sign_in(page, live_server, world):
    page.goto(f"{live_server}/login")
    page.fill("#email", world.derm.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Triage queue')")


def click_photo(page, site_id: int, fx: float, fy: float) -> None:
    """A click at (fx, fy), fractions of the shown photo's width and height."""
    photo = page.locator(f"#site-{site_id} .outline-canvas input[type=image]")
    box = photo.bounding_box()
    page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])


def saved_outline(site_id: int) -> Site:
    db.session.expire_all()
    return db.session.get(Site, site_id)


def test_tap_then_draw_the_outline(browser, live_server, world, watch, shoot):
    site, baseline, _ = enrolled_site(world)  # 1200 x 900, a scar line across the middle, never outlined
    context = browser.new_context(**DESK)
    page = watch.attach(context.new_page())
    sign_in(page, live_server, world)
    page.goto(f"{live_server}/patients/{site.patient_id}")
    assert "No outline yet" in page.inner_text(f"#site-{site.id}")
    shoot(page, "01-no-outline")

    # A click on the scar: the server outlines what is under it.
    with page.expect_navigation():
        click_photo(page, site.id, 0.5, 0.51)
    assert "Outline saved." in page.inner_text("main")
    tapped = saved_outline(site.id)
    assert tapped.outline_source == "staff" and tapped.outline_photo_id == baseline.id
    mask = polygon_to_mask(tapped.outline_polygon, (900, 1200))
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - 600) < 120 and abs(ys.mean() - 459) < 60, (xs.mean(), ys.mean())
    assert page.locator(f"#site-{site.id} polygon.scar-outline").count() == 1
    shoot(page, "02-tapped")

    # Drawn point by point; the save button waits for three points.
    page.check(f"#site-{site.id} input[name=outline_mode][value=draw]")
    save = page.locator(f"#site-{site.id} button[value=polygon]")
    assert save.is_visible() and save.is_disabled()
    for fx, fy in ((0.25, 0.4), (0.75, 0.4), (0.75, 0.6), (0.25, 0.6)):
        click_photo(page, site.id, fx, fy)
    assert page.url.endswith(f"#outline-{site.id}")  # no submit while drawing
    assert "4 points" in page.inner_text(f"#site-{site.id} .outline-count") and save.is_enabled()
    assert len(page.get_attribute(f"#site-{site.id} polyline.draft", "points").split()) == 5  # closed
    shoot(page, "03-drawn")
    with page.expect_navigation():
        save.click()
    assert "Outline saved." in page.inner_text("main")
    drawn = saved_outline(site.id).outline_polygon
    expected = [[300, 360], [900, 360], [900, 540], [300, 540]]
    assert np.allclose(drawn, expected, atol=3), drawn
    shoot(page, "04-saved")
    context.close()
    assert watch.errors == [], watch.errors


def test_tap_without_javascript(browser, live_server, world, watch):
    site, _, _ = enrolled_site(world)
    context = browser.new_context(java_script_enabled=False, **DESK)
    page = watch.attach(context.new_page())
    sign_in(page, live_server, world)
    page.goto(f"{live_server}/patients/{site.patient_id}")
    assert page.locator(f"#site-{site.id} .outline-mode").is_hidden()  # drawing needs the script
    with page.expect_navigation():
        click_photo(page, site.id, 0.5, 0.51)
    assert "Outline saved." in page.inner_text("main")
    mask = polygon_to_mask(saved_outline(site.id).outline_polygon, (900, 1200))
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - 600) < 120 and abs(ys.mean() - 459) < 60, (xs.mean(), ys.mean())
    context.close()
    assert watch.errors == [], watch.errors
