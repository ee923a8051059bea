"""Browser tests: Playwright for Python driving the system's Chromium, headless, against a real server thread.

Skipped (with the reason) where Playwright or Chromium is missing. Screenshots go to artifacts/browser/.
"""
from __future__ import annotations

import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from followup.db import db
from followup.records import links
from followup.records.patients import create_patient, create_site
from tests.conftest import REPO
from tests.followup.cases import add_photo, skin_image

ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture
def backend() -> str:
    """One database is enough here: the browser tests are about pages, not SQL dialects."""
    return "sqlite"


@pytest.fixture(scope="session")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        yield playwright


def launch(playwright, *extra_args: str):
    """The system's Chromium, headless, with the flags CI needs (and ``extra_args``)."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                      args=CHROMIUM_ARGS + list(extra_args))


@pytest.fixture(scope="session")
def browser(playwright):
    browser = launch(playwright)
    yield browser
    browser.close()


@pytest.fixture
def app_config(app_config):
    app_config.update(
        WTF_CSRF_ENABLED=True,          # as in production: every form must carry its token
        JOB_BACKEND="deferred",         # the test plays the analysis pipeline, so the outcome is known
        PUBLIC_BASE_URL="http://127.0.0.1",
    )
    return app_config


@contextmanager
def serving(app, name: str = "live-server"):
    """The app served over HTTP from a thread; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def serve():
    """``serving`` for a test that builds its own app."""
    return serving


@pytest.fixture
def live_server(app):
    """The app served over HTTP from a thread; yields its base URL."""
    with serving(app) as url:
        yield url


class PageWatch:
    """Collects JavaScript errors, console errors and failed requests of every page of a context."""

    def __init__(self):
        self.errors: list[str] = []

    def attach(self, page):
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: uncaught {exc}"))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"{page.url}: console {msg.text}"))
        page.on("requestfailed", self._request_failed)
        return page

    def _request_failed(self, req):
        # The browser aborts what is still loading (the favicon, say) when a
        # click navigates away; that is no failure of the page.
        if req.failure != "net::ERR_ABORTED":
            self.errors.append(f"request failed {req.url}: {req.failure}")


@pytest.fixture
def watch():
    return PageWatch()


@pytest.fixture
def shoot(request):
    """``shoot(page, "01-name")`` saves a full-page screenshot under artifacts/browser/<test>/."""
    folder = ARTIFACTS / request.node.name.replace("[", "-").replace("]", "")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


DESK = {"viewport": {"width": 1280, "height": 900}}


def enrolled_site(world):
    from datetime import date, timedelta

    patient = create_patient(world.clinic, name="Grace Hopper", phone="+447700900456", sms_consent=True)
    site = create_site(patient, body_site="left shoulder", diagnosis="melanoma", stage="IB",
                       excision_date=date.today() - timedelta(days=120), dermatologist=world.derm)
    db.session.commit()
    baseline = add_photo(site, kind="baseline", image=skin_image(1200, 900, seed=7), days_ago=100)
    db.session.commit()
    token, _ = links.create_link(site)
    db.session.commit()
    return site, baseline, token
