"""Fixtures of the site-outline tests (helpers in tests/followup/outline_cases.py)."""
import numpy as np
import pytest

from followup.db import db
from followup.models import Site
from registration import polygon_to_mask
from tests.followup.outline_cases import SQUARE
from tests.registration.conftest import skin_photo


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
    monkeypatch.setattr("followup.outlines.propose_site", lambda image, modality=None: np.zeros(image.shape[:2], bool))


@pytest.fixture
def square_proposal(monkeypatch):
    """The pipeline proposes ``SQUARE`` on every baseline."""
    monkeypatch.setattr("followup.outlines.propose_site",
                        lambda image, modality=None: polygon_to_mask(SQUARE, image.shape))
