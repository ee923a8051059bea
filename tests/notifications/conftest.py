"""Fixtures: a running `FakeTwilio` and `TwilioSender`s pointed at it that record their sleeps."""

from __future__ import annotations

import random
from typing import Any, Callable, Iterator, List

import pytest

from notifications.testing import DEFAULT_MESSAGING_SERVICE_SID, FakeTwilio
from notifications.twilio_sender import RetryPolicy, TwilioSender


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def sleeps() -> List[float]:
    """Every wait the sender asked for, in order (the waits themselves are skipped)."""
    return []


@pytest.fixture
def make_sender(fake_twilio: FakeTwilio, sleeps: List[float]) -> Callable[..., TwilioSender]:
    """Build a `TwilioSender` for the fake; keyword arguments override the defaults."""

    def build(**overrides: Any) -> TwilioSender:
        settings: dict[str, Any] = dict(
            account_sid=fake_twilio.account_sid,
            auth_token=fake_twilio.auth_token,
            messaging_service_sid=DEFAULT_MESSAGING_SERVICE_SID,
            api_base_url=fake_twilio.base_url,
            timeout_seconds=2.0,
            retry=RetryPolicy(),
            sleep=sleeps.append,
            rng=random.Random(7),
        )
        settings.update(overrides)
        return TwilioSender(**settings)

    return build
