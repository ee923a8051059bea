"""The HTTP client under `twilio.rest.Client`: explicit timeouts, an optional base-URL rewrite, quiet logging,
and "come back later" answers turned into an exception that keeps the ``Retry-After`` header."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from requests import Response as RequestsResponse
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

logger = logging.getLogger(__name__)

#: Statuses with which Twilio says "not processed, try again later" (the message was not created).
RETRY_LATER_STATUSES = frozenset({429, 503})


class ProviderBusy(Exception):
    """Twilio answered 429 or 503: the request was not processed and may be repeated after `retry_after`."""

    def __init__(self, status: int, retry_after: Optional[float]) -> None:
        super().__init__(f"Twilio answered HTTP {status}; retry after {retry_after} s")
        self.status = status
        self.retry_after = retry_after


class RebasingHttpClient(TwilioHttpClient):
    """`TwilioHttpClient` that can send every request to another Twilio-compatible server.

    The twilio library builds absolute URLs (``https://api.twilio.com/2010-04-01/...``, page links included)
    and its ``edge``/``region`` settings can only pick other ``*.twilio.com`` hosts, so the rewrite happens
    here, the one place every request passes: scheme and host are replaced by `base_url`'s, the path is
    appended to `base_url`'s path, and the query string is kept.
    """

    def __init__(self, *, timeout: float, base_url: Optional[str] = None) -> None:
        super().__init__(timeout=timeout, logger=logger)
        self.base_url = base_url.rstrip("/") if base_url else None

    def rebase(self, url: str) -> str:
        """`url` as sent: unchanged without a base URL, otherwise moved onto the base URL."""
        if self.base_url is None:
            return url
        base = urlsplit(self.base_url)
        original = urlsplit(url)
        return urlunsplit((base.scheme, base.netloc, base.path + original.path, original.query, ""))

    def request(
        self,
        method: str,
        url: str,
        params: Optional[Dict[str, object]] = None,
        data: Optional[Dict[str, object]] = None,
        headers: Optional[Dict[str, str]] = None,
        auth: Optional[Tuple[str, str]] = None,
        timeout: Optional[float] = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send the request to the (rebased) URL; raise `ProviderBusy` on 429/503."""
        response = super().request(
            method,
            self.rebase(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        if response.status_code in RETRY_LATER_STATUSES:
            # TwilioRestException drops the headers, so Retry-After has to be read here.
            raise ProviderBusy(response.status_code, parse_retry_after(response.headers.get("Retry-After")))
        return response

    # One DEBUG line per request: the library's INFO logging prints query strings, which hold phone numbers.
    def log_request(self, kwargs: Dict[str, object]) -> None:
        logger.debug("Twilio request %s %s", kwargs["method"], urlsplit(str(kwargs["url"])).path)

    def log_response(self, status_code: int, response: RequestsResponse) -> None:
        logger.debug("Twilio response %s", status_code)


def parse_retry_after(value: Optional[str], *, now: Optional[datetime] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²", which float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
