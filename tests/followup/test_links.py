"""Patient upload links: signed, expiring, bound to a site, revocable, used up."""
import io
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from followup.db import db, utcnow
from followup.models import Photo, Site, UploadLink
from followup.outreach import sweep
from followup.records import links
from tests.conftest import jpeg_bytes


def make_link(site_id, **kwargs) -> str:
    token, _ = links.create_link(db.session.get(Site, site_id), **kwargs)
    db.session.commit()
    return token


def test_link_page_and_upload(client, site_id):
    token = make_link(site_id)
    page = client.get(f"/u/{token}")
    assert page.status_code == 200
    assert "noindex" in page.headers["X-Robots-Tag"] and page.headers["Referrer-Policy"] == "no-referrer"
    assert b"left shoulder" in page.data and b"North Clinic" in page.data
    response = client.post(f"/u/{token}", data={"photo": (io.BytesIO(jpeg_bytes()), "me.jpg"), "bleed": "yes",
                                                 "itch": "no", "grew": "unsure"}, content_type="multipart/form-data",
                           follow_redirects=True)
    assert response.status_code == 200
    photo = db.session.execute(db.select(Photo)).scalar_one()
    assert (photo.kind, photo.site_id, photo.bleed, photo.itch, photo.grew) == ("followup", site_id, True, False, None)


def test_bad_upload_on_link_page_says_why_and_stores_nothing(client, site_id):
    token = make_link(site_id)
    response = client.post(f"/u/{token}", data={"photo": (io.BytesIO(b"<html>"), "x.jpg")},
                           content_type="multipart/form-data")
    assert response.status_code == 415 and b"not a JPEG" in response.data
    assert db.session.execute(db.select(Photo)).first() is None


def test_expired_revoked_used_and_forged_links(client, site_id):
    expired = make_link(site_id, days=0)
    assert client.get(f"/u/{expired}").status_code == 410

    revoked = make_link(site_id)
    links.revoke_site_links([site_id])
    db.session.commit()
    response = client.get(f"/u/{revoked}")
    assert response.status_code == 410 and b"new link" in response.data

    used = make_link(site_id)
    link = db.session.execute(db.select(UploadLink).order_by(UploadLink.id.desc())).scalars().first()
    link.used_at = utcnow()
    db.session.commit()
    assert client.get(f"/u/{used}").status_code == 410

    assert client.get(f"/u/{used[:-2]}xx").status_code == 404
    assert client.get("/u/not-a-token").status_code == 404


def test_link_expiry_default_is_14_days(app, site_id):
    _, link = links.create_link(db.session.get(Site, site_id))
    assert timedelta(days=13, hours=23) < link.expires_at - utcnow() <= timedelta(days=14)


def test_the_upload_cap_holds_when_uploads_race_on_one_link(client, site_id):
    """Another request filled the link between this one's check and its write: nothing is stored."""
    token = make_link(site_id)
    page = client.get(f"/u/{token}")
    assert page.status_code == 200
    link = db.session.execute(db.select(UploadLink)).scalar_one()
    assert link.uploads == 0  # what this request read
    # Parallel requests, on their own connections, take the remaining uploads in the meantime.
    with db.engine.begin() as other:
        other.execute(db.update(UploadLink).where(UploadLink.id == link.id).values(uploads=links.MAX_UPLOADS))
    from followup.intake.photos import receive_photo

    site = db.session.get(Site, site_id)
    try:
        receive_photo(site, jpeg_bytes(), kind="followup", link=link, enqueue=False)
    except links.LinkProblem as problem:
        assert problem.reason == "used"
    else:
        raise AssertionError("an upload past the cap was accepted")
    db.session.expire_all()
    assert db.session.execute(db.select(Photo)).first() is None
    assert db.session.get(UploadLink, link.id).uploads == links.MAX_UPLOADS


def test_uploads_count_up_to_the_cap_then_the_link_is_used(client, site_id):
    token = make_link(site_id)
    for i in range(links.MAX_UPLOADS):
        response = client.post(f"/u/{token}", data={"photo": (io.BytesIO(jpeg_bytes(seed=i)), "me.jpg")},
                               content_type="multipart/form-data")
        assert response.status_code == 303, i
    assert db.session.execute(db.select(UploadLink)).scalar_one().uploads == links.MAX_UPLOADS
    assert client.get(f"/u/{token}").status_code == 410


def live_links(site_id) -> list[int]:
    return list(db.session.execute(db.select(UploadLink.id).where(UploadLink.site_id == site_id,
                                                                 UploadLink.revoked_at.is_(None))).scalars())


def test_a_new_link_from_the_api_revokes_the_sites_older_ones(client, world, site_id):
    headers = world.headers(client, "derm@north.test")
    first, second = (client.post(f"/api/v1/sites/{site_id}/upload-link", headers=headers).get_json()["url"]
                     for _ in range(2))
    response = client.get(urlsplit(first).path)
    assert response.status_code == 410 and b"replaced by a newer one" in response.data
    assert client.get(urlsplit(second).path).status_code == 200
    assert len(live_links(site_id)) == 1


def test_a_reminder_link_revokes_the_sites_older_ones(client, world):
    from tests.followup.helpers import enrol, utc

    _, site = enrol(world.clinic, "+447700900101")
    older = make_link(site.id)
    assert sweep.dispatch(utc(2027, 2, 4, 10, 0))["queued"] == 1  # the photo request, with a new link
    assert client.get(f"/u/{older}").status_code == 410
    assert len(live_links(site.id)) == 1


def test_a_clinic_that_asks_for_it_keeps_several_live_links_per_site(app, client, world, site_id):
    app.config["UPLOAD_LINKS_SEVERAL_CLINICS"] = frozenset({world.clinic.id})
    first, second = make_link(site_id), make_link(site_id)
    assert client.get(f"/u/{first}").status_code == client.get(f"/u/{second}").status_code == 200
    app.config["UPLOAD_LINKS_SEVERAL_CLINICS"] = frozenset({world.other_clinic.id})
    make_link(site_id)
    assert client.get(f"/u/{first}").status_code == 410 and len(live_links(site_id)) == 1


def test_a_sealed_link_opens_to_its_url_and_shows_hidden(app, site_id):
    token = make_link(site_id)
    text = f"Photo please: {links.sealed_link(token)} Reply STOP."
    assert token not in text
    sent = f"Photo please: https://scarwatch.test/u/{token} Reply STOP."
    assert links.open_links(text) == links.open_links(text) == sent
    assert links.hide_links(text) == "Photo please: https://scarwatch.test/u/… Reply STOP."
    assert links.hide_links(f"Older text: https://scarwatch.test/u/{token}") == "Older text: https://scarwatch.test/u/…"
    app.config["SECRET_KEY"] = "another key"
    with pytest.raises(ValueError, match="SECRET_KEY"):
        links.open_links(text)
