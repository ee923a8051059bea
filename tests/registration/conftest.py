"""Synthetic skin photos for the registration tests (no shared data needed)."""

import pytest

from tests.helpers import skin_photo


@pytest.fixture(scope="session")
def skin():
    return skin_photo(7)


@pytest.fixture(scope="session")
def other_skin():
    return skin_photo(1234)


@pytest.fixture(scope="session")
def make_skin():
    """The generator itself, for tests that need other seeds or sizes."""
    return skin_photo
