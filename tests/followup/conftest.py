"""Fixtures of the follow-up tests: the site-outline scenes (helpers in tests/followup/outline_cases.py) and SMS
through the loopback Twilio (helpers in tests/followup/helpers.py)."""
import numpy as np
import pytest
from sqlalchemy import event

from followup.db import db
from followup.models import Site
from notifications.testing import FakeTwilio
from registration import polygon_to_mask
from tests.followup.helpers import make_sender
from tests.followup.outline_cases import SQUARE
from tests.helpers import skin_photo


@pytest.fixture(scope="session")
def lesion_scene():
    """A 480 x 360 skin photo with one brown lesion, and the lesion's mask."""
    return skin_photo(21)


@pytest.fixture
def outline_site(app, world, site_id) -> Site:
    """A BCC site (10 mm margin) of the North clinic, without photos."""
    return db.session.get(Site, site_id)


@pytest.fixture
def no_proposal(monkeypatch):
    """The pipeline finds nothing to outline on a baseline."""
    monkeypatch.setattr("followup.intake.outlines.propose_site",
                        lambda image, modality=None: np.zeros(image.shape[:2], bool))


@pytest.fixture
def square_proposal(monkeypatch):
    """The pipeline proposes ``SQUARE`` on every baseline."""
    monkeypatch.setattr("followup.intake.outlines.propose_site",
                        lambda image, modality=None: polygon_to_mask(SQUARE, image.shape))


@pytest.fixture
def fake_twilio():
    with FakeTwilio() as fake:
        yield fake


def _no_fsync(dbapi_connection, _record) -> None:
    """Tests simulate no power cuts, and a sweep commits often: skip waiting for the disk."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        dbapi_connection.execute("PRAGMA synchronous=OFF")
    else:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
        dbapi_connection.commit()


@pytest.fixture
def sms_app(app, fake_twilio):
    """The app with its SMS going to the fake (and the fake's token signing webhooks)."""
    event.listen(db.engine, "connect", _no_fsync)
    db.session.remove()
    db.engine.dispose()
    app.config["TWILIO_AUTH_TOKEN"] = fake_twilio.auth_token
    app.extensions["sms_sender"] = make_sender(fake_twilio)
    return app
