"""Locust users of the load bench (``make bench-load``; run by `bench.load`, which writes ``LOAD_PLAN``).

- `Patient`: the reminder's link (``POST /api/v1/sites/{id}/upload-link``, what the SMS sweep makes), the link's
  page (``GET /u/<token>``), then the photo (``POST /u/<token>``, multipart, as the page's form sends it), one
  upload every ``pacing`` seconds. Each patient has a site of its own, with an accepted baseline.
- `Dermatologist`: signs in on the web page (CSRF token from the form), then polls the queue (``/queue`` and its
  auto-refresh fragment ``/queue/rows``) and opens alerts found on it (``/alerts/<id>``).

The plan (JSON) gives the staff token, each patient's site and follow-up photo files, the dermatologist's
email and password, the pacing, and how many users of each kind (``fixed_count``).
"""
from __future__ import annotations

import itertools
import json
import os
import random
import re

from locust import HttpUser, between, constant_pacing, task

PLAN = json.loads(open(os.environ["LOAD_PLAN"]).read())
_patients = itertools.count()
_alerts = re.compile(r'href="/alerts/(\d+)"')
_csrf = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Patient(HttpUser):
    fixed_count = PLAN["patients"]
    wait_time = constant_pacing(PLAN["pacing_seconds"])

    def on_start(self):
        mine = PLAN["sites"][next(_patients) % len(PLAN["sites"])]
        self.site_id = mine["site_id"]
        self.photos = itertools.cycle(mine["followups"])
        self.staff = {"Authorization": f"Bearer {PLAN['token']}"}

    @task
    def send_photo(self):
        link = self.client.post(f"/api/v1/sites/{self.site_id}/upload-link", headers=self.staff,
                                name="reminder link (API)")
        if link.status_code != 200:
            return
        path = "/u/" + link.json()["url"].rsplit("/u/", 1)[1]
        self.client.get(path, name="/u/[token] (page)")
        with open(next(self.photos), "rb") as photo:
            self.client.post(path, files={"photo": ("photo.jpg", photo, "image/jpeg")},
                             data={"grew": "unsure"}, headers={"Accept": "application/json"},
                             name="/u/[token] upload")


class Dermatologist(HttpUser):
    fixed_count = PLAN["dermatologists"]
    wait_time = between(1, 3)

    def on_start(self):
        page = self.client.get("/login", name="/login")
        token = _csrf.search(page.text)
        self.client.post("/login", data={"email": PLAN["derm_email"], "password": PLAN["derm_password"],
                                         "csrf_token": token.group(1) if token else ""}, name="/login",
                         allow_redirects=False)
        self.alert_ids: list[str] = []

    @task(4)
    def queue(self):
        response = self.client.get("/queue", name="/queue")
        self.alert_ids = _alerts.findall(response.text) or self.alert_ids

    @task(2)
    def refresh(self):
        self.client.get("/queue/rows", name="/queue/rows")

    @task(2)
    def open_alert(self):
        if self.alert_ids:
            self.client.get(f"/alerts/{random.choice(self.alert_ids)}", name="/alerts/[id]")
