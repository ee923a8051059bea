"""The patient's upload page from the SMS link: guide, questions, upload, the plain answer, dead links."""
from __future__ import annotations

import io
import logging
import re
import time
from datetime import timedelta

import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy import select

from followup.db import db, utcnow
from followup.models import Photo, Site
from followup.records import links
from tests.followup.cases import add_photo, encode, reject, skin_image


@pytest.fixture(autouse=True)
def deferred(app_config):
    app_config["JOB_BACKEND"] = "deferred"  # the photo stays queued: the test plays the pipeline
    return app_config


@pytest.fixture
def link(deferred, world, site_id):
    site = db.session.get(Site, site_id)
    add_photo(site, kind="baseline", image=skin_image(seed=1))
    token, row = links.create_link(site)
    db.session.commit()
    return {"token": token, "id": row.id, "site": site}


def upload(client, token, data=None, **form):
    payload = {"photo": (io.BytesIO(data or encode(skin_image(seed=2, spot=10))), "scar.jpg"), **form}
    return client.post(f"/u/{token}", data=payload, content_type="multipart/form-data")


def assert_private(response):
    assert response.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response.headers["Cache-Control"]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_page_shows_clinic_site_guide_tips_and_works_without_script(client, link):
    response = client.get(f"/u/{link['token']}")
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert_private(response)
    assert '<meta name="robots" content="noindex, nofollow">' in text and 'content="no-referrer"' in text
    assert "North Clinic" in text and "left shoulder" in text
    assert f'/u/{link["token"]}/guide.jpg' in text
    assert re.search(r'<input id="photo" name="photo" type="file" accept="image/\*" capture="environment"', text)
    for field in ("grew", "itch", "bleed", "hurt", "changed", "elevation"):
        assert f'name="{field}" value="unsure"' in text
    assert "Not sure" in text and "<strong>Light:</strong>" in text  # the answers' third choice, and the tips
    assert not re.search(r"<script(?![^>]*\bsrc=)|\sstyle=|\son[a-z]+=", text)
    words = text.replace(link["token"], "").lower()  # the random token could spell anything
    assert "grace hopper" not in words and "bcc" not in words  # nothing the patient need not see


def test_guide_is_the_baseline_photo_small_and_private(client, link):
    response = client.get(f"/u/{link['token']}/guide.jpg")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.headers["Cache-Control"] == "private, no-store"
    from PIL import Image

    assert max(Image.open(io.BytesIO(response.data)).size) <= 1024


def test_upload_with_answers_then_received(client, link):
    response = upload(client, link["token"], grew="yes", itch="no", bleed="unsure")
    assert response.status_code == 303
    assert_private(response)
    photo = db.session.execute(select(Photo).where(Photo.kind == "followup")).scalar_one()
    assert (photo.grew, photo.itch, photo.bleed, photo.hurt) == (True, False, None, None)
    status_url = response.headers["Location"]
    assert status_url == f"/u/{link['token']}/sent/{photo.id}"
    checking = client.get(status_url)
    assert "Checking your photo" in checking.get_data(as_text=True) and checking.headers["Refresh"] == "5"
    assert client.get(status_url + "?format=json").get_json() == {"state": "checking", "reasons": []}
    photo.status = "done"
    photo.status_changed_at = utcnow()
    db.session.commit()
    done = client.get(status_url).get_data(as_text=True)
    assert "Received, thank you" in done


def test_javascript_upload_gets_json(client, link):
    response = client.post(f"/u/{link['token']}", data={"photo": (io.BytesIO(encode(skin_image())), "a.jpg")},
                           content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.get_json()["status_url"].startswith(f"/u/{link['token']}/sent/")
    bad = client.post(f"/u/{link['token']}", data={"photo": (io.BytesIO(b"not an image"), "a.jpg")},
                      content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert bad.status_code == 415 and "JPEG" in bad.get_json()["errors"][0]


def test_rejected_photo_says_why_and_offers_a_retake(client, link):
    response = upload(client, link["token"])
    photo = db.session.execute(select(Photo).where(Photo.kind == "followup")).scalar_one()
    reject(photo, ["too dark — turn on a light or move near a window"])
    text = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "We could not use this photo because" in text and "too dark" in text
    assert f'href="/u/{link["token"]}"' in text
    words = text.replace(link["token"], "").lower()  # the random token could spell anything
    for word in ("recurrence", "score", "melanoma", "suspicious"):
        assert word not in words


def test_not_an_image_is_refused_on_the_page(client, link):
    response = upload(client, link["token"], data=b"hello")
    assert response.status_code == 415 and "not a JPEG" in response.get_data(as_text=True)


def test_status_page_needs_the_photos_own_link(client, link, world):
    response = upload(client, link["token"])
    photo_id = int(response.headers["Location"].rsplit("/", 1)[1])
    other, _ = links.create_link(link["site"])
    db.session.commit()
    assert client.get(f"/u/{other}/sent/{photo_id}").status_code == 404
    assert client.get(f"/u/garbage/sent/{photo_id}").status_code == 404


@pytest.mark.parametrize("reason, words", [
    ("expired", "has expired"), ("revoked", "replaced by a newer one"), ("used", "already have your photo"),
])
def test_dead_links_get_a_kind_page(client, link, reason, words):
    row = db.session.get(links.UploadLink, link["id"])
    if reason == "expired":
        row.expires_at = utcnow() - timedelta(minutes=1)
    elif reason == "revoked":
        row.revoked_at = utcnow()
    else:
        row.used_at = utcnow()
    db.session.commit()
    response = client.get(f"/u/{link['token']}")
    text = response.get_data(as_text=True)
    assert response.status_code == 410 and words in text
    assert "new link" in text and "+441234567890" in text  # how to get a new one: the clinic's number
    assert_private(response)
    assert client.get(f"/u/{link['token']}/guide.jpg").status_code == 410


def test_invalid_link(client, link):
    response = client.get("/u/not-a-token")
    assert response.status_code == 404 and "not complete or not valid" in response.get_data(as_text=True)
    assert_private(response)


def test_an_upload_from_a_page_left_open_for_hours_goes_in(app, client, link, monkeypatch):
    """The link's token is the credential: no cookie, session or CSRF token ages out under an open page."""
    app.config["WTF_CSRF_ENABLED"] = True  # as in production
    page = client.get(f"/u/{link['token']}")
    assert "Set-Cookie" not in page.headers
    sent_back = dict(re.findall(r'name="(csrf_token)" type="hidden" value="([^"]+)"', page.get_data(as_text=True)))
    opened = time.time()
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(opened) + 3 * 3600)  # 3 hours later
    response = upload(client, link["token"], **sent_back)
    assert response.status_code == 303, response.get_data(as_text=True)[:200]


def too_large(app, client, token, monkeypatch):
    app.config["MAX_CONTENT_LENGTH"] = 20_000
    return upload(client, token, data=b"\xff" * 50_000)


def server_trouble(app, client, token, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("storage unavailable")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    monkeypatch.setattr("followup.web.patient.receive_photo", broken)
    return upload(client, token)


@pytest.mark.parametrize("request_, status, words", [
    (lambda app, client, token, _: client.post(f"/u/{token}", data={}), 400, "Choose or take a photo first."),
    (lambda app, client, token, _: upload(client, token, data=b"<html>"), 415, "not a JPEG"),
    (too_large, 413, "too large to send (the limit is 25 MB)"),
    (lambda app, client, token, _: client.get(f"/u/{token}/nothing"), 404, "That page does not exist"),
    (lambda app, client, token, _: client.put(f"/u/{token}"), 405, "That page does not exist"),
    (server_trouble, 500, "something went wrong on our side"),
], ids=["400", "415", "413", "404", "405", "500"])
def test_every_error_on_the_patients_page_is_a_kind_page_with_the_form(app, client, link, monkeypatch, caplog,
                                                                       request_, status, words):
    response = request_(app, client, link["token"], monkeypatch)
    text = response.get_data(as_text=True)
    assert response.status_code == status and words in text
    assert 'id="upload-form"' in text and "North Clinic" in text and "left shoulder" in text
    assert_private(response)
    if status == 500:
        assert "unhandled error on POST /u/…" in caplog.text
    assert link["token"] not in caplog.text  # a log line with the token would be a working link


def test_access_log_lines_hide_the_upload_token(app, link, caplog):
    """The development server's (werkzeug) and gunicorn's access lines carry the path as requested."""
    caplog.set_level(logging.INFO)
    for name in links.ACCESS_LOGGERS:
        logging.getLogger(name).info('%s - - [%s] "%s" %s %s', "192.0.2.7", "05/Dec/2026 19:00:00",
                                     f"GET /u/{link['token']} HTTP/1.1", 200, "-")
    assert caplog.text.count('"GET /u/… HTTP/1.1" 200') == 2 and link["token"] not in caplog.text


def test_an_error_answers_the_pages_script_in_json(app, client, link):
    app.config["MAX_CONTENT_LENGTH"] = 20_000
    response = client.post(f"/u/{link['token']}", data={"photo": (io.BytesIO(b"\xff" * 50_000), "scar.jpg")},
                           content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert response.status_code == 413 and "too large to send" in response.get_json()["errors"][0]


@pytest.fixture
def limited(app_config):
    app_config.update(RATELIMIT_ENABLED=True, LINK_UPLOAD_RATE_LIMIT="3 per hour",
                      ADDRESS_UPLOAD_RATE_LIMIT="5 per hour")


def test_uploads_are_limited_per_link_and_per_address_with_a_kind_page(limited, client, link):
    first = [client.post(f"/u/{link['token']}", data={}) for _ in range(4)]
    assert [r.status_code for r in first] == [400, 400, 400, 429]
    text = first[-1].get_data(as_text=True)
    assert "tried many times in a short while" in text and 'id="upload-form"' in text and "North Clinic" in text
    assert_private(first[-1])
    token, _ = links.create_link(link["site"])  # another link: its own count, the same address
    db.session.commit()
    assert [client.post(f"/u/{token}", data={}).status_code for _ in range(2)] == [400, 429]  # 5 per address
    assert client.post(f"/u/{token}", data={}, environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 400
    assert client.get(f"/u/{token}").status_code == 200  # only uploads count


def test_page_explains_the_reference_sticker(client, link):
    text = client.get(f"/u/{link['token']}").get_data(as_text=True)
    assert 'src="/reference-sticker.svg"' in text and "beside the scar" in text
