"""`FakeTwilio`: a Twilio-compatible Messages API on loopback, for tests and benchmarks.

It speaks enough of ``/2010-04-01`` for the real `twilio` client: create a message, fetch one, list messages
(Twilio's page format, newest first, filtered by ``To``/``From``). It checks HTTP basic auth, records every
message and request, and injects faults into the next requests::

    with FakeTwilio() as fake:
        sender = sender_from_config(fake.config())
        fake.fail_next(2, status=503)            # Twilio outage for two requests
        fake.fail_next(1, status=429, retry_after=3)
        fake.reset_next(1)                       # connection closed without an answer, nothing created
        fake.slow_next(1, delay_seconds=2)       # message created, answer arrives too late
        fake.opt_out("+15005550199")             # sending there answers error 21610
        sender.send(...)
        assert [m.to for m in fake.messages] == [...]

Faults queue up in the order given and each one is used by one request (only requests with its `method`,
when given). Message statuses stay ``queued`` until a test calls `FakeTwilio.set_status`.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Dict, List, Optional, Set, Tuple, Type
from urllib.parse import parse_qs, urlencode, urlsplit

DEFAULT_ACCOUNT_SID = "AC" + "f" * 32
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token"
DEFAULT_MESSAGING_SERVICE_SID = "MG" + "f" * 32

_API = "/2010-04-01"
_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC\w+)/Messages\.json$")
_MESSAGE = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC\w+)/Messages/(?P<sid>SM\w+)\.json$")

_ERRORS = {
    20003: (401, "Authenticate"),
    20004: (405, "Method not allowed"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number or 'MessagingServiceSid' is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
}


@dataclass
class RecordedMessage:
    """One message the fake created, as Twilio would store it."""

    sid: str
    account_sid: str
    to: str
    body: str
    from_: Optional[str]
    messaging_service_sid: Optional[str]
    status_callback: Optional[str]
    date_created: datetime
    status: str = "queued"
    error_code: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        """The message in Twilio's JSON form."""
        created = format_datetime(self.date_created)
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": self.body,
            "date_created": created,
            "date_updated": created,
            "date_sent": None,
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "status": self.status,
            "subresource_uris": {"media": f"{_API}/Accounts/{self.account_sid}/Messages/{self.sid}/Media.json"},
            "to": self.to,
            "uri": f"{_API}/Accounts/{self.account_sid}/Messages/{self.sid}.json",
        }


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request as the fake saw it (faulted ones included)."""

    method: str
    path: str
    params: Dict[str, str]


@dataclass(frozen=True)
class _Fault:
    kind: str  # "status", "reset" or "slow"
    method: Optional[str]
    status: int = 503
    retry_after: Optional[str] = None
    delay_seconds: float = 0.0


@dataclass
class _State:
    """Everything the request threads share; guarded by `lock`."""

    account_sid: str
    auth_token: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    messages: Dict[str, RecordedMessage] = field(default_factory=dict)
    by_recipient: Dict[str, List[RecordedMessage]] = field(default_factory=dict)
    requests: List[ReceivedRequest] = field(default_factory=list)
    faults: List[_Fault] = field(default_factory=list)
    opted_out: Set[str] = field(default_factory=set)

    def take_fault(self, method: str) -> Optional[_Fault]:
        for index, fault in enumerate(self.faults):
            if fault.method in (None, method):
                return self.faults.pop(index)
        return None


class FakeTwilio:
    """A Twilio-compatible HTTP server on ``127.0.0.1`` (a free port) in a background thread.

    Use as a context manager, or `start` and `stop`. Thread-safe: the sender under test may run in many
    threads. `base_url` is what ``TWILIO_API_BASE_URL`` should be; `config` gives a whole configuration.
    """

    def __init__(self, *, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN) -> None:
        self._state = _State(account_sid=account_sid, auth_token=auth_token)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def account_sid(self) -> str:
        return self._state.account_sid

    @property
    def auth_token(self) -> str:
        return self._state.auth_token

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError("FakeTwilio is not running; call start() or use it in a with-statement")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def config(
        self, *, from_number: Optional[str] = None, timeout_seconds: float = 10.0
    ) -> Dict[str, str]:
        """Configuration keys (as in CONTRACT.md) that point a sender at this server; a Messaging Service
        sends unless `from_number` is given."""
        config = {
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_API_BASE_URL": self.base_url,
            "TWILIO_TIMEOUT_SECONDS": str(timeout_seconds),
        }
        if from_number:
            config["TWILIO_FROM_NUMBER"] = from_number
        else:
            config["TWILIO_MESSAGING_SERVICE_SID"] = DEFAULT_MESSAGING_SERVICE_SID
        return config

    def start(self) -> "FakeTwilio":
        """Start serving on a free loopback port."""
        self._state.stopping.clear()
        handler = type("_BoundHandler", (_Handler,), {"state": self._state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-twilio", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; slow answers still waiting give up at once."""
        self._state.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> "FakeTwilio":
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.stop()

    @property
    def messages(self) -> List[RecordedMessage]:
        """Every message created so far, oldest first."""
        with self._state.lock:
            return list(self._state.messages.values())

    @property
    def requests(self) -> List[ReceivedRequest]:
        """Every request received so far, oldest first."""
        with self._state.lock:
            return list(self._state.requests)

    def fail_next(
        self, count: int = 1, *, status: int = 503, retry_after: Optional[float] = None, method: Optional[str] = None
    ) -> None:
        """Answer the next `count` requests with HTTP `status` (and ``Retry-After``); nothing is created."""
        header = None if retry_after is None else f"{retry_after:g}"
        self._add(count, _Fault("status", method, status=status, retry_after=header))

    def reset_next(self, count: int = 1, *, method: Optional[str] = None) -> None:
        """Read the next `count` requests, then reset the connection without answering; nothing is created."""
        self._add(count, _Fault("reset", method))

    def slow_next(self, count: int = 1, *, delay_seconds: float, method: Optional[str] = None) -> None:
        """Handle the next `count` requests normally (messages are created) but answer `delay_seconds` late."""
        self._add(count, _Fault("slow", method, delay_seconds=delay_seconds))

    def clear_faults(self) -> None:
        """Drop the faults not used yet (an outage injected with a large count ends now)."""
        with self._state.lock:
            self._state.faults.clear()

    def opt_out(self, number: str) -> None:
        """Make messages to `number` fail with error 21610 (unsubscribed recipient)."""
        with self._state.lock:
            self._state.opted_out.add(number)

    def set_status(self, sid: str, status: str, *, error_code: Optional[int] = None) -> None:
        """Move message `sid` on, e.g. to ``delivered`` or to ``undelivered`` with error 30003."""
        with self._state.lock:
            message = self._state.messages[sid]
            message.status = status
            message.error_code = error_code

    def _add(self, count: int, fault: _Fault) -> None:
        if fault.method is not None and fault.method not in ("GET", "POST"):
            raise ValueError(f"method must be 'GET', 'POST' or None, got {fault.method!r}")
        with self._state.lock:
            self._state.faults.extend([fault] * count)


class _Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive so that a sweep of thousands of messages reuses it."""

    state: _State
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are written separately; Nagle would delay each answer
    timeout = 60  # idle keep-alive connections end eventually

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a benchmark sends thousands of requests."""

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8") if length else url.query
        params = {key: values[0] for key, values in parse_qs(raw, keep_blank_values=True).items()}
        with self.state.lock:
            self.state.requests.append(ReceivedRequest(method, url.path, params))
            fault = self.state.take_fault(method)
        if fault is not None and fault.kind == "reset":
            self._reset()
            return
        if fault is not None and fault.kind == "status":
            code = {429: 20429, 503: 20503}.get(fault.status, 20500)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send(fault.status, _error_body(code, fault.status), headers)
            return
        status, body = self._route(method, url.path, params)
        if fault is not None and self.state.stopping.wait(fault.delay_seconds):
            self.close_connection = True  # stopping: hang up instead of answering
            return
        try:
            self._send(status, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped waiting; for a slow answer that is the point

    def _route(self, method: str, path: str, params: Dict[str, str]) -> Tuple[int, Dict[str, Any]]:
        messages, message = _MESSAGES.match(path), _MESSAGE.match(path)
        match = messages or message
        if match is None:
            return 404, _error_body(20404)
        if not self._authorised(match.group("account")):
            return 401, _error_body(20003)
        if messages and method == "POST":
            return self._create(params)
        if messages and method == "GET":
            return 200, self._list(path, params)
        if message and method == "GET":
            with self.state.lock:
                found = self.state.messages.get(message.group("sid"))
            return (200, found.to_json()) if found else (404, _error_body(20404))
        return 405, _error_body(20004)

    def _authorised(self, path_account: str) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except ValueError:
            return False
        return user == path_account == self.state.account_sid and password == self.state.auth_token

    def _create(self, params: Dict[str, str]) -> Tuple[int, Dict[str, Any]]:
        to, body = params.get("To"), params.get("Body")
        from_, service = params.get("From"), params.get("MessagingServiceSid")
        if not to:
            return 400, _error_body(21604)
        if not body:
            return 400, _error_body(21602)
        if not (from_ or service):
            return 400, _error_body(21603)
        with self.state.lock:
            if to in self.state.opted_out:
                return 400, _error_body(21610)
            message = RecordedMessage(
                sid="SM" + uuid.uuid4().hex,
                account_sid=self.state.account_sid,
                to=to,
                body=body,
                from_=from_,
                messaging_service_sid=service,
                status_callback=params.get("StatusCallback"),
                date_created=datetime.now(timezone.utc),
            )
            self.state.messages[message.sid] = message
            self.state.by_recipient.setdefault(to, []).append(message)
            return 201, message.to_json()

    def _list(self, path: str, params: Dict[str, str]) -> Dict[str, Any]:
        page_size = max(1, min(1000, int(params.get("PageSize") or 50)))
        page = max(0, int(params.get("Page") or 0))
        with self.state.lock:
            if "To" in params:
                candidates = list(self.state.by_recipient.get(params["To"], []))
            else:
                candidates = list(self.state.messages.values())
        if "From" in params:
            candidates = [m for m in candidates if m.from_ == params["From"]]
        candidates.reverse()  # newest first, as Twilio lists
        records = candidates[page * page_size : (page + 1) * page_size]

        def page_uri(number: int) -> str:
            query = {k: v for k, v in params.items() if k not in ("Page", "PageToken")}
            query.update({"PageSize": str(page_size), "Page": str(number), "PageToken": f"PA{number}"})
            return f"{path}?{urlencode(query)}"

        has_next = (page + 1) * page_size < len(candidates)
        return {
            "messages": [m.to_json() for m in records],
            "page": page,
            "page_size": page_size,
            "start": page * page_size,
            "end": page * page_size + max(0, len(records) - 1),
            "uri": page_uri(page),
            "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1) if has_next else None,
            "previous_page_uri": page_uri(page - 1) if page else None,
        }

    def _send(self, status: int, body: Dict[str, Any], headers: Optional[Dict[str, str]] = None) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST: the client sees the connection reset.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


def _error_body(code: int, status: Optional[int] = None) -> Dict[str, Any]:
    default_status, message = _ERRORS[code]
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status or default_status,
    }
