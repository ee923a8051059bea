"""`TwilioSender`: SMS through the real `twilio` client, with bounded retries and reconciliation.

Why reconciliation
------------------
Twilio's Messages API has no idempotency key. A ``POST .../Messages.json`` that gets no answer may or may not
have created a message, and sending again blindly can text a patient twice. So every failure is sorted into one
of three kinds:

* **Not processed** — Twilio answered 429 or 503, or no connection could be opened. Nothing was created; the
  request is repeated after a backoff (exponential with jitter, at least ``Retry-After``).
* **Processed, outcome hidden** — Twilio answered 500/502/504, or closed the connection without an answer.
  Twilio creates the Message before it answers, and it is done with this request, so after a short settling
  delay the sender *looks the message up*; found → that message is the result, not found → it was not created
  and the request is repeated.
* **Maybe still in progress** — the read timed out, or the answer was cut off or unreadable. Twilio may still be
  creating the message, so a lookup that finds nothing proves nothing: found → that message is the result; not
  found → status ``unknown``.

How a message is found without a SID
------------------------------------
Twilio lists messages to a number newest first. The lookup reads that list back to the attempt's start (minus
`clock_skew_seconds`, since Twilio's clock is not ours) and matches on recipient, sender (Messaging Service SID
or From number) and exact body. Bodies must therefore differ between logical messages sent to one number in
that window — a reminder's one-time upload link makes them differ — and must leave Twilio unchanged (keep
Smart Encoding off or bodies GSM-7). When the caller knows a SID (from a result or a status callback), `lookup`
fetches that message instead.

What the caller (the outbox) does
---------------------------------
1. Claim the row so that one worker sends it, store ``attempted_at`` (UTC now), then call `send`.
2. ``queued``/``sent``: store the SID. ``failed``: send again later if `retryable`, else give up (and record
   the opt-out when `opted_out`). ``unknown``: do not send; call `lookup` with the stored ``attempted_at`` after
   `lookup_settle_seconds`.
3. `lookup` answers ``not_sent`` only when the attempt is old enough that its message would be visible: then
   send again (with a new ``attempted_at``). ``unknown`` again: ask later.

Every answer is a `SendResult`; provider and network trouble never raise.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from json import JSONDecodeError
from typing import Callable, Optional

from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ConnectTimeout, RequestException
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance
from urllib3.exceptions import NewConnectionError

from notifications.sms import OPTED_OUT_ERROR_CODE, OutgoingSms, SendResult
from notifications.twilio_http import ProviderBusy, RebasingHttpClient
from notifications.twilio_statuses import result_from_twilio

logger = logging.getLogger(__name__)


class _ScanLimitReached(Exception):
    """The lookup read `lookup_scan_limit` messages without reaching the attempt's start."""


#: What can stop a lookup from answering; each makes the answer ``unknown``.
_LOOKUP_TROUBLE = (ProviderBusy, TwilioRestException, RequestException, JSONDecodeError, _ScanLimitReached)

#: Rejections that are the account's fault, not the message's: fixing the configuration makes a resend succeed.
_ACCOUNT_PROBLEM_STATUSES = frozenset({401, 403})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one `TwilioSender.send` tries before handing the message back to the caller.

    Parameters
    ----------
    max_attempts : int
        POST requests per `send`, the first included.
    base_delay, max_delay : float
        Backoff before retry ``n`` (0-based) is drawn from ``[c/2, c]`` with ``c = min(max_delay,
        base_delay * 2**n)``: exponential, bounded, jittered so that many senders do not retry in step.
    max_retry_after : float
        A 429/503 asking for a longer wait ends the `send` (``failed``, retryable): the next sweep retries.
    settle_delay : float
        Wait before looking a message up after an ambiguous failure, for Twilio's list to show it.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0
    settle_delay: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Seconds to wait before retry `retry_number` (0 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * 2**retry_number)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class TwilioSender:
    """Sends SMS through Twilio's REST API (or a Twilio-compatible server at `api_base_url`).

    Parameters
    ----------
    account_sid, auth_token : str
        Twilio credentials (HTTP basic auth).
    messaging_service_sid, from_number : str or None
        Exactly one: the Messaging Service that picks the sender, or the sending number.
    default_status_callback : str or None
        Status callback for messages that carry none.
    timeout_seconds : float
        Connect and read timeout of each HTTP request.
    api_base_url : str or None
        Send every REST call here instead of ``https://api.twilio.com`` (same paths, same auth).
    retry : RetryPolicy
        Retry and backoff settings.
    lookup_settle_seconds : float
        Age an attempt must reach before `lookup` may conclude from "not found" that it created nothing; longer
        than any time Twilio may still be working on a request we stopped waiting for.
    clock_skew_seconds : float
        Allowance for Twilio's clock differing from ours when matching creation times.
    lookup_scan_limit : int
        Most messages to one number read back per lookup; reaching it without passing the attempt's start
        answers ``unknown``.
    sleep, rng, clock
        Injected by tests: waiting, jitter and the current (timezone-aware) time.
    """

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        messaging_service_sid: Optional[str] = None,
        from_number: Optional[str] = None,
        default_status_callback: Optional[str] = None,
        timeout_seconds: float = 10.0,
        api_base_url: Optional[str] = None,
        retry: RetryPolicy = RetryPolicy(),
        lookup_settle_seconds: float = 120.0,
        clock_skew_seconds: float = 300.0,
        lookup_scan_limit: int = 500,
        sleep: Callable[[float], None] = time.sleep,
        rng: Optional[random.Random] = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if bool(messaging_service_sid) == bool(from_number):
            raise ValueError("give exactly one of messaging_service_sid and from_number")
        self.messaging_service_sid = messaging_service_sid
        self.from_number = from_number
        self.default_status_callback = default_status_callback
        self.timeout_seconds = timeout_seconds
        self.retry = retry
        self.lookup_settle = timedelta(seconds=lookup_settle_seconds)
        self.clock_skew = timedelta(seconds=clock_skew_seconds)
        self.lookup_scan_limit = lookup_scan_limit
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        http_client = RebasingHttpClient(timeout=timeout_seconds, base_url=api_base_url)
        self._client = Client(account_sid, auth_token, http_client=http_client)

    def send(self, message: OutgoingSms) -> SendResult:
        """Create the message at Twilio once; see the module docstring for retries and reconciliation."""
        attempted_at = self._clock()
        failure = SendResult(status="failed", retryable=True)
        retry_after: Optional[float] = None
        for attempt in range(self.retry.max_attempts):
            if attempt:
                self._sleep(max(self.retry.backoff(attempt - 1, self._rng), retry_after or 0.0))
            retry_after = None
            try:
                return self._result_from(self._create(message))
            except ProviderBusy as busy:
                failure = SendResult(status="failed", error_code=busy.status, error_message=str(busy), retryable=True)
                retry_after = busy.retry_after
                if retry_after is not None and retry_after > self.retry.max_retry_after:
                    return failure
            except TwilioRestException as rejected:
                if rejected.status < 500:
                    return _rejection(rejected)
                settled = self._reconcile(message, attempted_at)
                if settled is not None:
                    return settled
                failure = SendResult(status="failed", error_code=rejected.code, error_message=rejected.msg,
                                     retryable=True)
            except RequestsConnectionError as lost:
                if not _never_reached_twilio(lost):
                    settled = self._reconcile(message, attempted_at)
                    if settled is not None:
                        return settled
                failure = SendResult(status="failed", error_message=f"connection failed: {lost}", retryable=True)
            except (RequestException, JSONDecodeError) as lost:
                # A read timeout, or an answer cut off or unreadable: Twilio may still be creating the message.
                return self._reconcile(message, attempted_at) or SendResult(
                    status="unknown",
                    error_message=f"no usable answer from Twilio ({type(lost).__name__}); call lookup() before "
                    "sending again",
                )
            logger.warning(
                "SMS %s attempt %d/%d failed: %s",
                message.idempotency_key,
                attempt + 1,
                self.retry.max_attempts,
                failure.error_message,
            )
        return failure

    def lookup(self, message: OutgoingSms, *, attempted_at: datetime, sid: Optional[str] = None) -> SendResult:
        """What became of a `send` of `message` that started at `attempted_at` (timezone-aware).

        With `sid`, the message is fetched; without, it is searched for as the module docstring describes.
        Answers ``not_sent`` (retryable) only when nothing matches and the attempt is older than
        `lookup_settle_seconds`; ``unknown`` when nothing matches yet or Twilio cannot be asked.
        """
        if attempted_at.tzinfo is None:
            raise ValueError("attempted_at must be timezone-aware (UTC)")
        try:
            found = self._client.messages(sid).fetch() if sid else self._find(message, attempted_at)
        except _LOOKUP_TROUBLE as trouble:
            return SendResult(status="unknown", error_message=f"lookup failed: {trouble}")
        if found is not None:
            return self._result_from(found)
        if self._clock() - attempted_at < self.lookup_settle:
            return SendResult(status="unknown", error_message="not found yet; the attempt is too recent to tell")
        return SendResult(status="not_sent", error_message="no such message at Twilio", retryable=True)

    def _create(self, message: OutgoingSms) -> MessageInstance:
        sender = (
            {"messaging_service_sid": self.messaging_service_sid}
            if self.messaging_service_sid
            else {"from_": self.from_number}
        )
        status_callback = message.status_callback or self.default_status_callback
        if status_callback:
            sender["status_callback"] = status_callback
        return self._client.messages.create(to=message.to, body=message.body, **sender)

    def _reconcile(self, message: OutgoingSms, attempted_at: datetime) -> Optional[SendResult]:
        """After a failure that Twilio may have processed: the message's result if it exists, ``unknown`` if
        Twilio cannot be asked, None if it provably does not exist (so sending again is safe)."""
        self._sleep(self.retry.settle_delay)
        try:
            found = self._find(message, attempted_at)
        except _LOOKUP_TROUBLE as trouble:
            return SendResult(status="unknown", error_message=f"outcome unknown and lookup failed: {trouble}")
        if found is None:
            return None
        logger.info("SMS %s: reconciled with existing message %s", message.idempotency_key, found.sid)
        return self._result_from(found)

    def _find(self, message: OutgoingSms, attempted_at: datetime) -> Optional[MessageInstance]:
        """The oldest message from us to `message.to` with its body created since the attempt began."""
        window_start = attempted_at - self.clock_skew
        match: Optional[MessageInstance] = None
        scanned = 0
        for record in self._client.messages.stream(to=message.to, limit=self.lookup_scan_limit, page_size=100):
            scanned += 1
            if record.date_created is not None and record.date_created < window_start:
                return match  # newest first: nothing older can belong to this attempt
            if self._is_ours(record) and (record.body or "").strip() == message.body.strip():
                match = record
        if scanned >= self.lookup_scan_limit:
            raise _ScanLimitReached(f"{scanned} messages to this number since the attempt began")
        return match

    def _is_ours(self, record: MessageInstance) -> bool:
        if not (record.direction or "").startswith("outbound"):
            return False
        if self.messaging_service_sid:
            return record.messaging_service_sid == self.messaging_service_sid
        return record.from_ == self.from_number

    @staticmethod
    def _result_from(record: MessageInstance) -> SendResult:
        return result_from_twilio(record.sid, record.status, record.error_code, record.error_message)


def _rejection(rejected: TwilioRestException) -> SendResult:
    """Result for a 4xx answer: Twilio refused the message and created nothing."""
    code = rejected.code if isinstance(rejected.code, int) else None
    return SendResult(
        status="failed",
        error_code=code,
        error_message=rejected.msg,
        retryable=rejected.status in _ACCOUNT_PROBLEM_STATUSES,
        opted_out=code == OPTED_OUT_ERROR_CODE,
    )


def _never_reached_twilio(error: RequestsConnectionError) -> bool:
    """Whether the connection failed before any byte of the request was sent (refused, DNS, connect timeout)."""
    if isinstance(error, ConnectTimeout):
        return True
    cause = error.args[0] if error.args else None
    return isinstance(getattr(cause, "reason", None), NewConnectionError)
