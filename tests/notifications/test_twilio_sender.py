"""`TwilioSender` with the real twilio client against `FakeTwilio`: sending, retries, reconciliation, lookup."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import List

import pytest

from notifications.sms import OutgoingSms
from notifications.testing import DEFAULT_MESSAGING_SERVICE_SID, FakeTwilio
from notifications.twilio_http import RebasingHttpClient, parse_retry_after
from notifications.twilio_sender import RetryPolicy, TwilioSender

PATIENT = "+447700900123"
CALLBACK = "https://scarwatch.test/twilio/status"


def reminder(body: str = "Time to photograph your scar: https://scarwatch.test/u/abc123", **kwargs) -> OutgoingSms:
    return OutgoingSms(to=PATIENT, body=body, idempotency_key="outbox:1", **kwargs)


def posts(fake: FakeTwilio) -> List[str]:
    return [r.method for r in fake.requests if r.method == "POST"]


def test_send_creates_one_message_with_all_fields(fake_twilio, make_sender):
    result = make_sender().send(reminder(status_callback=CALLBACK))

    [message] = fake_twilio.messages
    assert (message.to, message.body) == (PATIENT, reminder().body)
    assert message.messaging_service_sid == DEFAULT_MESSAGING_SERVICE_SID
    assert message.from_ is None
    assert message.status_callback == CALLBACK
    assert result.status == "queued"
    assert result.sid == message.sid and result.sid.startswith("SM")
    assert not result.retryable and not result.opted_out


def test_from_number_and_default_status_callback(fake_twilio, make_sender):
    sender = make_sender(messaging_service_sid=None, from_number="+15005550006", default_status_callback=CALLBACK)

    assert sender.send(reminder()).status == "queued"

    [message] = fake_twilio.messages
    assert (message.from_, message.messaging_service_sid, message.status_callback) == ("+15005550006", None, CALLBACK)


def test_needs_exactly_one_of_service_and_number(make_sender):
    with pytest.raises(ValueError, match="exactly one"):
        make_sender(from_number="+15005550006")
    with pytest.raises(ValueError, match="exactly one"):
        make_sender(messaging_service_sid=None)


def test_wrong_credentials_are_rejected_by_the_server(fake_twilio, make_sender):
    result = make_sender(auth_token="wrong-token").send(reminder())

    assert fake_twilio.messages == []
    assert len(fake_twilio.requests) == 1
    assert (result.status, result.error_code) == ("failed", 20003)
    assert result.retryable  # a credentials problem is fixed in configuration, the message itself is fine


def test_rebase_keeps_path_and_query_under_a_base_path():
    client = RebasingHttpClient(timeout=1, base_url="http://127.0.0.1:9999/twilio/")
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?To=%2B1&Page=2"

    assert client.rebase(url) == "http://127.0.0.1:9999/twilio/2010-04-01/Accounts/AC1/Messages.json?To=%2B1&Page=2"
    assert RebasingHttpClient(timeout=1).rebase(url) == url


def test_retries_503_with_growing_bounded_backoff(fake_twilio, make_sender, sleeps):
    fake_twilio.fail_next(3, status=503)

    result = make_sender(retry=RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=3.0)).send(reminder())

    assert result.status == "queued"
    assert len(fake_twilio.messages) == 1
    assert posts(fake_twilio) == ["POST"] * 4
    assert len(sleeps) == 3
    for retry_number, delay in enumerate(sleeps):
        ceiling = min(3.0, 1.0 * 2**retry_number)
        assert ceiling / 2 <= delay <= ceiling


def test_gives_up_after_max_attempts_retryable_and_nothing_created(fake_twilio, make_sender, sleeps):
    fake_twilio.fail_next(10, status=503)

    result = make_sender(retry=RetryPolicy(max_attempts=3)).send(reminder())

    assert (result.status, result.error_code, result.retryable) == ("failed", 503, True)
    assert posts(fake_twilio) == ["POST"] * 3
    assert fake_twilio.messages == []


def test_429_waits_at_least_retry_after(fake_twilio, make_sender, sleeps):
    fake_twilio.fail_next(1, status=429, retry_after=7)

    result = make_sender().send(reminder())

    assert result.status == "queued"
    assert len(fake_twilio.messages) == 1
    assert sleeps == [7.0]


def test_429_asking_for_too_long_a_wait_hands_back_to_the_caller(fake_twilio, make_sender, sleeps):
    fake_twilio.fail_next(1, status=429, retry_after=3600)

    result = make_sender().send(reminder())

    assert (result.status, result.error_code, result.retryable) == ("failed", 429, True)
    assert sleeps == []
    assert fake_twilio.messages == []


def test_connection_reset_is_looked_up_then_retried(fake_twilio, make_sender):
    fake_twilio.reset_next(1, method="POST")

    result = make_sender().send(reminder())

    assert result.status == "queued"
    assert [m.sid for m in fake_twilio.messages] == [result.sid]
    assert [r.method for r in fake_twilio.requests] == ["POST", "GET", "POST"]


def test_500_is_looked_up_then_retried(fake_twilio, make_sender):
    fake_twilio.fail_next(1, status=500, method="POST")

    result = make_sender().send(reminder())

    assert result.status == "queued"
    assert len(fake_twilio.messages) == 1
    assert [r.method for r in fake_twilio.requests] == ["POST", "GET", "POST"]


def test_timeout_is_reconciled_by_lookup_without_resending(fake_twilio, make_sender):
    fake_twilio.slow_next(1, delay_seconds=3, method="POST")

    result = make_sender(timeout_seconds=0.3).send(reminder())

    [message] = fake_twilio.messages
    assert (result.status, result.sid) == ("queued", message.sid)
    assert posts(fake_twilio) == ["POST"]


def test_timeout_with_failed_lookup_is_unknown_until_looked_up(fake_twilio, make_sender):
    fake_twilio.slow_next(1, delay_seconds=3, method="POST")
    fake_twilio.fail_next(1, status=503, method="GET")
    sender = make_sender(timeout_seconds=0.3)
    attempted_at = datetime.now(timezone.utc)

    first = sender.send(reminder())
    later = sender.lookup(reminder(), attempted_at=attempted_at)

    assert (first.status, first.retryable) == ("unknown", False)
    [message] = fake_twilio.messages
    assert (later.status, later.sid) == ("queued", message.sid)
    assert posts(fake_twilio) == ["POST"]


def test_opted_out_recipient(fake_twilio, make_sender):
    fake_twilio.opt_out(PATIENT)

    result = make_sender().send(reminder())

    assert (result.status, result.error_code) == ("failed", 21610)
    assert result.opted_out and not result.retryable
    assert posts(fake_twilio) == ["POST"]
    assert fake_twilio.messages == []


def test_unreachable_server_is_retried_without_lookups(sleeps):
    with FakeTwilio() as fake:
        base_url = fake.base_url
        credentials = dict(account_sid=fake.account_sid, auth_token=fake.auth_token)
    sender = TwilioSender(
        **credentials,
        messaging_service_sid=DEFAULT_MESSAGING_SERVICE_SID,
        api_base_url=base_url,
        retry=RetryPolicy(max_attempts=3, settle_delay=5.0),
        sleep=sleeps.append,
        rng=random.Random(1),
    )

    result = sender.send(reminder())

    assert (result.status, result.retryable) == ("failed", True)
    assert len(sleeps) == 2 and 5.0 not in sleeps  # backoffs only, no settle-then-lookup


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_lookup_of_nothing_is_unknown_at_first_then_not_sent(make_sender, clock):
    sender = make_sender(clock=clock, lookup_settle_seconds=120)
    attempted_at = clock.now

    assert sender.lookup(reminder(), attempted_at=attempted_at).status == "unknown"
    clock.now += timedelta(seconds=121)
    result = sender.lookup(reminder(), attempted_at=attempted_at)
    assert (result.status, result.retryable) == ("not_sent", True)


def test_lookup_requires_an_aware_time(make_sender):
    with pytest.raises(ValueError, match="timezone-aware"):
        make_sender().lookup(reminder(), attempted_at=datetime.now())


def test_lookup_matches_body_sender_and_time_window(fake_twilio, make_sender, clock):
    other_sender = make_sender(messaging_service_sid=None, from_number="+15005550006")
    other_sender.send(reminder())  # same number and body, but not our sender
    make_sender().send(reminder(body="another reminder"))
    sender = make_sender(clock=clock, clock_skew_seconds=60)

    assert sender.lookup(reminder(), attempted_at=clock.now - timedelta(minutes=5)).status == "not_sent"

    make_sender().send(reminder())
    [ours] = [m for m in fake_twilio.messages if m.messaging_service_sid and m.body == reminder().body]
    found = sender.lookup(reminder(), attempted_at=clock.now)
    assert (found.status, found.sid) == ("queued", ours.sid)
    clock.now += timedelta(hours=2)
    # ours was created long before this attempt, so it is not this attempt's message
    too_old = sender.lookup(reminder(), attempted_at=clock.now - timedelta(minutes=3))
    assert too_old.status == "not_sent"


def test_lookup_follows_list_pages(fake_twilio, make_sender):
    sender = make_sender()
    attempted_at = datetime.now(timezone.utc)
    target = sender.send(reminder(body="the oldest one"))
    for n in range(120):
        sender.send(reminder(body=f"later message {n}"))

    result = sender.lookup(reminder(body="the oldest one"), attempted_at=attempted_at)

    assert result.sid == target.sid
    list_pages = [r for r in fake_twilio.requests if r.method == "GET"]
    assert len(list_pages) == 2


def test_lookup_gives_up_past_the_scan_limit(make_sender):
    sender = make_sender(lookup_scan_limit=5)
    attempted_at = datetime.now(timezone.utc)
    sender.send(reminder(body="the oldest one"))
    for n in range(5):
        sender.send(reminder(body=f"later message {n}"))

    assert sender.lookup(reminder(body="the oldest one"), attempted_at=attempted_at).status == "unknown"


@pytest.mark.parametrize(
    ("twilio_status", "error_code", "status", "retryable", "opted_out"),
    [
        ("delivered", None, "sent", False, False),
        ("sending", None, "queued", False, False),
        ("undelivered", 30003, "failed", True, False),
        ("undelivered", 30006, "failed", False, False),
        ("failed", 21610, "failed", False, True),
        ("canceled", None, "failed", False, False),
    ],
)
def test_lookup_by_sid_reports_twilio_status(
    fake_twilio, make_sender, twilio_status, error_code, status, retryable, opted_out
):
    sender = make_sender()
    sid = sender.send(reminder()).sid
    fake_twilio.set_status(sid, twilio_status, error_code=error_code)

    result = sender.lookup(reminder(), attempted_at=datetime.now(timezone.utc), sid=sid)

    assert (result.sid, result.status, result.error_code) == (sid, status, error_code)
    assert (result.retryable, result.opted_out) == (retryable, opted_out)


def test_lookup_of_a_sid_twilio_does_not_know_is_unknown(make_sender):
    result = make_sender().lookup(reminder(), attempted_at=datetime.now(timezone.utc), sid="SM" + "0" * 32)

    assert result.status == "unknown"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("Thu, 26 Nov 2026 17:01:00 GMT", 60.0),
        ("Thu, 26 Nov 2026 16:00:00 GMT", 0.0),
        ("soon", None),
        ("²", None),  # a digit to str.isdigit(), not to float()
        (None, None),
    ],
)
def test_parse_retry_after(header, seconds):
    now = datetime(2026, 11, 26, 17, 0, tzinfo=timezone.utc)

    assert parse_retry_after(header, now=now) == seconds


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(to="07700900123", body="hi", idempotency_key="k"),
        dict(to=PATIENT, body="  ", idempotency_key="k"),
        dict(to=PATIENT, body="x" * 1601, idempotency_key="k"),
        dict(to=PATIENT, body="hi", idempotency_key=""),
    ],
)
def test_outgoing_sms_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        OutgoingSms(**kwargs)



def test_retry_policy_needs_an_attempt():
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(max_attempts=0)
