"""`sender_from_config` and `ConsoleSender`."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from notifications import ConsoleSender, OutgoingSms, SmsSender, TwilioSender, sender_from_config

MESSAGE = OutgoingSms(to="+447700900123", body="Your link: https://scarwatch.test/u/xyz", idempotency_key="outbox:9")


@pytest.mark.parametrize("config", [{}, {"TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": "  "}])
def test_without_credentials_messages_are_logged_not_sent(config, caplog):
    sender = sender_from_config(config)
    caplog.set_level(logging.INFO, logger="notifications.console_sender")

    result = sender.send(MESSAGE)

    assert isinstance(sender, ConsoleSender) and isinstance(sender, SmsSender)
    assert (result.status, result.retryable, result.sid) == ("not_sent", False, None)
    assert MESSAGE.body in caplog.text and MESSAGE.to in caplog.text
    assert sender.lookup(MESSAGE, attempted_at=datetime.now(timezone.utc)).status == "not_sent"


def test_the_console_logs_the_text_as_its_log_body_shows_it(caplog):
    caplog.set_level(logging.INFO, logger="notifications.console_sender")
    secret = OutgoingSms(to=MESSAGE.to, body=MESSAGE.body, idempotency_key="outbox:10",
                         log_body="Your link: https://scarwatch.test/u/…")
    ConsoleSender().send(secret)
    assert "Your link: https://scarwatch.test/u/…" in caplog.text and "/u/xyz" not in caplog.text


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({"TWILIO_ACCOUNT_SID": "AC1"}, "both"),
        ({"TWILIO_AUTH_TOKEN": "t"}, "both"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"}, "TWILIO_FROM_NUMBER"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "TWILIO_FROM_NUMBER": "+1",
          "TWILIO_TIMEOUT_SECONDS": "x"}, "number"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "TWILIO_FROM_NUMBER": "+1",
          "TWILIO_TIMEOUT_SECONDS": "0"}, "positive"),
    ],
)
def test_half_a_configuration_is_an_error(config, complaint):
    with pytest.raises(ValueError, match=complaint):
        sender_from_config(config)


def test_twilio_configuration_sends_through_the_base_url(fake_twilio):
    config = {**fake_twilio.config(timeout_seconds=4), "PUBLIC_BASE_URL": "https://scarwatch.test/"}

    sender = sender_from_config(config)
    result = sender.send(MESSAGE)

    assert isinstance(sender, TwilioSender)
    assert sender.timeout_seconds == 4.0
    [message] = fake_twilio.messages
    assert result.sid == message.sid
    assert message.status_callback == "https://scarwatch.test/twilio/status"


def test_default_timeout_and_service_preferred_over_number(fake_twilio):
    config = {**fake_twilio.config(), "TWILIO_FROM_NUMBER": "+15005550006"}
    del config["TWILIO_TIMEOUT_SECONDS"]

    sender = sender_from_config(config)

    assert sender.timeout_seconds == 10.0
    assert (sender.messaging_service_sid, sender.from_number) == (config["TWILIO_MESSAGING_SERVICE_SID"], None)
    assert sender.default_status_callback is None
