"""The demo as a newcomer sees it (issue 20): a full queue, a first alert with months of photos, a performance
page with numbers and charts, and no JavaScript errors. Reads the session's seeded demo (``demo_config``)."""
from __future__ import annotations

from datetime import datetime

import pytest

from app import create_app
from followup.db import db
from followup.demo import DERM


@pytest.fixture
def demo_server(demo_config, serve):
    app = create_app(demo_config)
    with serve(app, name="demo-server") as url:
        yield url
    with app.app_context():
        db.engine.dispose()


def test_demo_tour(browser, demo_server, watch, shoot):
    page = watch.attach(browser.new_context(viewport={"width": 1280, "height": 900}).new_page())
    page.goto(f"{demo_server}/login")
    page.fill("#email", DERM[0])
    page.fill("#password", DERM[1])
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Triage queue')")
    rows = page.locator("#queue-rows tr[data-alert]")
    assert rows.count() >= 4, "the queue is full when the page opens"
    shoot(page, "01-queue")

    page.locator("a.open-alert").first.click()
    page.wait_for_selector("#timeline-title")
    dates = [datetime.strptime(text.strip(), "%d %b %Y") if text.strip()[0].isdigit() else None
             for text in page.locator("table.timeline tbody tr td:nth-child(2)").all_inner_texts()]
    assert len(dates) >= 4
    known = [d for d in dates if d]
    assert len(known) == len(dates) and (max(known) - min(known)).days > 120, dates
    assert page.locator("section[aria-labelledby=timeline-title] svg.chart rect").count() >= 3
    shoot(page, "02-first-alert")

    page.goto(f"{demo_server}/performance")
    summary = page.locator("main p").first.inner_text()
    assert "resolved alert" in summary and "—" not in summary and not summary.startswith("0 "), summary
    for title in ("Flags that were real, by score", "Calibration of the recurrence score",
                  "Time from photo to decision"):
        assert page.locator(f"svg.chart title:text-is('{title}')").count() == 1, title
    assert page.locator("svg.chart rect.bar").count() >= 3 and page.locator("svg.chart circle.point").count() >= 1
    assert page.locator(".median-hours").inner_text().endswith(" h")
    shoot(page, "03-performance")
    assert watch.errors == []
