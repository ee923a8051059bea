"""`FakeTwilio` as the real twilio client sees it: auth, create, fetch, paged lists, faults, concurrency."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from requests.exceptions import ConnectionError as RequestsConnectionError
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from notifications.testing import DEFAULT_MESSAGING_SERVICE_SID, FakeTwilio
from notifications.twilio_http import ProviderBusy, RebasingHttpClient

TO = "+447700900123"


def client_for(fake: FakeTwilio, *, auth_token: str | None = None, account_sid: str | None = None) -> Client:
    return Client(
        account_sid or fake.account_sid,
        auth_token or fake.auth_token,
        http_client=RebasingHttpClient(timeout=2, base_url=fake.base_url),
    )


def test_create_fetch_and_list_newest_first_across_pages(fake_twilio):
    client = client_for(fake_twilio)
    created = [
        client.messages.create(to=TO, body=f"message {n}", messaging_service_sid=DEFAULT_MESSAGING_SERVICE_SID)
        for n in range(5)
    ]
    client.messages.create(to="+15005550006", body="someone else", from_="+15005550001")

    listed = client.messages.list(to=TO, page_size=2)
    fetched = client.messages(created[2].sid).fetch()

    assert [m.sid for m in listed] == [m.sid for m in reversed(created)]
    assert (fetched.body, fetched.status, fetched.direction) == ("message 2", "queued", "outbound-api")
    assert fetched.date_created is not None and fetched.date_created.tzinfo is not None
    assert [r.params.get("Page") for r in fake_twilio.requests if r.method == "GET"][:3] == [None, "1", "2"]


@pytest.mark.parametrize(
    ("credentials", "status"),
    [({"auth_token": "wrong"}, 401), ({"account_sid": "AC" + "0" * 32}, 401)],
)
def test_checks_basic_auth(fake_twilio, credentials, status):
    client = client_for(fake_twilio, **credentials)

    with pytest.raises(TwilioRestException) as raised:
        client.messages.create(to=TO, body="hi", messaging_service_sid=DEFAULT_MESSAGING_SERVICE_SID)

    assert (raised.value.status, raised.value.code) == (status, 20003)
    assert fake_twilio.messages == []


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": "", "body": "hi", "messaging_service_sid": DEFAULT_MESSAGING_SERVICE_SID}, 21604),
        ({"to": TO, "messaging_service_sid": DEFAULT_MESSAGING_SERVICE_SID}, 21602),
        ({"to": TO, "body": "hi"}, 21603),
    ],
)
def test_rejects_incomplete_messages_like_twilio(fake_twilio, fields, code):
    with pytest.raises(TwilioRestException) as raised:
        client_for(fake_twilio).messages.create(**fields)

    assert (raised.value.status, raised.value.code) == (400, code)


def test_unknown_message_is_404(fake_twilio):
    with pytest.raises(TwilioRestException) as raised:
        client_for(fake_twilio).messages("SM" + "0" * 32).fetch()

    assert raised.value.status == 404


def test_faults_apply_in_order_and_only_to_their_method(fake_twilio):
    client = client_for(fake_twilio)
    fake_twilio.fail_next(1, status=429, retry_after=2, method="POST")
    fake_twilio.fail_next(1, status=503)

    with pytest.raises(ProviderBusy) as get_fault:
        client.messages.list(to=TO)  # skips the POST-only fault, takes the 503
    with pytest.raises(ProviderBusy) as post_fault:
        client.messages.create(to=TO, body="hi", messaging_service_sid=DEFAULT_MESSAGING_SERVICE_SID)
    client.messages.create(to=TO, body="hi", messaging_service_sid=DEFAULT_MESSAGING_SERVICE_SID)

    assert (get_fault.value.status, get_fault.value.retry_after) == (503, None)
    assert (post_fault.value.status, post_fault.value.retry_after) == (429, 2.0)
    assert len(fake_twilio.messages) == 1


def test_fault_method_must_be_get_or_post(fake_twilio):
    with pytest.raises(ValueError, match="method"):
        fake_twilio.reset_next(1, method="PUT")


def test_stop_releases_slow_answers_and_base_url_needs_a_running_server():
    fake = FakeTwilio().start()
    fake.slow_next(1, delay_seconds=60)
    client = client_for(fake)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.messages.list, to=TO)
        while not fake.requests:
            time.sleep(0.01)
        fake.stop()
        with pytest.raises(RequestsConnectionError):
            pending.result(timeout=1)  # the server hung up at once instead of answering after 60 s
    with pytest.raises(RuntimeError, match="not running"):
        fake.base_url


def test_concurrent_senders_get_every_message_recorded_once(fake_twilio):
    def send_batch(batch: int) -> list[str]:
        client = client_for(fake_twilio)
        return [
            client.messages.create(
                to=f"+1555000{batch:02d}{n:02d}", body=f"{batch}/{n}",
                messaging_service_sid=DEFAULT_MESSAGING_SERVICE_SID
            ).sid
            for n in range(50)
        ]

    with ThreadPoolExecutor(8) as pool:
        sids = [sid for batch in pool.map(send_batch, range(8)) for sid in batch]

    assert len(set(sids)) == 400
    assert sorted(m.sid for m in fake_twilio.messages) == sorted(sids)
