"""The stack's processes for the fault drills (``make faults``) and the load bench (``make bench-load``).

`Stack` runs what ``make stack`` runs — gunicorn, the scheduler, a Celery ``photos`` worker — against a PostgreSQL
database of its own (dropped and created again), a private ``redis-server`` on a free loopback port, and local
storage in a temporary folder or moto's S3 server; `Cut` is a loopback TCP relay in front of a dependency (S3,
Twilio) that can refuse connections for a while and come back, as a network outage would, while the dependency
keeps its data. Everything reaches the app only through its stable entry points: the processes of
``deploy/Procfile``, ``flask --app app`` commands, HTTP (`Api`), and plain SQL on the database for the
accounting (`photo_accounting`, `outbox_accounting`), so moving modules inside ``followup/`` does not break it.

The accounting helpers are pure functions over rows (unit-tested in tests/deploy/test_harness.py).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

REPO = Path(__file__).resolve().parents[1]
FINISHED = ("done", "rejected", "failed")


# --- accounting (pure) ---------------------------------------------------------------------------------------

def analysed_once(photos: Iterable[tuple[int, str]], analyses: Iterable[tuple[int, str]],
                  *, expected: Optional[int] = None) -> dict:
    """Did every photo end analysed exactly once?

    ``photos``: ``(photo_id, status)``; ``analyses``: ``(photo_id, comparison)`` (one row per comparison made:
    a follow-up has one against the baseline and maybe one against the previous photo; a baseline one
    ``quality`` row). A photo analysed twice has a comparison twice. ``expected``: the photos that were
    accepted by the upload route (None: whatever is in the table).
    """
    photos = list(photos)
    per = Counter(analyses)
    analysed = {photo_id for photo_id, _ in per}
    statuses = Counter(status for _, status in photos)
    figures = {
        "photos": len(photos),
        "outcomes": dict(statuses),
        "duplicate_analyses": sum(n - 1 for n in per.values() if n > 1),
        "photos_analysed_twice": sorted({photo_id for (photo_id, _), n in per.items() if n > 1}),
        "unfinished": sorted(photo_id for photo_id, status in photos if status not in FINISHED),
        "finished_without_analysis": sorted(photo_id for photo_id, status in photos
                                            if status in ("done", "rejected") and photo_id not in analysed),
        "lost": 0 if expected is None else max(0, expected - len(photos)),
    }
    figures["analysed_exactly_once"] = sum(1 for photo_id, status in photos if status in ("done", "rejected")
                                           and photo_id in analysed
                                           and photo_id not in figures["photos_analysed_twice"])
    figures["ok"] = (not figures["duplicate_analyses"] and not figures["unfinished"]
                     and not figures["finished_without_analysis"] and not figures["lost"]
                     and (expected is None or len(photos) == expected))
    return figures


def delivered_once(outbox: Iterable[tuple[int, str, str, Optional[str]]], twilio: Iterable[tuple[str, str]],
                   ) -> dict:
    """Was every text delivered exactly once?

    ``outbox``: ``(row_id, to, status, twilio_sid)`` for the rows that were due; ``twilio``: ``(sid, to)`` of
    every message the Twilio server created. A text is delivered once when its row is ``sent`` (or further)
    with a sid that Twilio has, and Twilio created nothing else for it; "twice" counts messages Twilio holds
    beyond one per row (by recipient, since a resend would carry another sid).
    """
    outbox = list(outbox)
    twilio = list(twilio)
    sids = Counter(sid for sid, _ in twilio)
    at_twilio = Counter(to for _, to in twilio)
    rows_to = Counter(to for _, to, _, _ in outbox)
    delivered = {"sent", "delivered", "read"}
    once = sum(1 for _, to, status, sid in outbox if status in delivered and sid and sids[sid] == 1
               and at_twilio[to] == rows_to[to])
    figures = {
        "texts_due": len(outbox),
        "row_statuses": dict(Counter(status for _, _, status, _ in outbox)),
        "messages_at_twilio": len(twilio),
        "delivered_exactly_once": once,
        "delivered_twice": sum(max(0, at_twilio[to] - rows_to[to]) for to in at_twilio),
        "lost": sum(1 for _, to, status, sid in outbox if status not in delivered or not sid or not sids[sid]),
        "unexpected_recipients": sorted(set(at_twilio) - set(rows_to)),
    }
    figures["ok"] = (once == len(outbox) and not figures["delivered_twice"] and not figures["lost"]
                     and not figures["unexpected_recipients"])
    return figures


def http_counts(statuses: Iterable[tuple[int, bool]]) -> dict:
    """``(status, dependency_down)`` per request → counts: 2xx, 4xx, 503 while a dependency was down (allowed),
    other 5xx while down, and any 5xx while everything was up (never allowed). Status 0: no answer at all."""
    counts = Counter()
    for status, down in statuses:
        if 200 <= status < 300:
            counts["2xx"] += 1
        elif 400 <= status < 500:
            counts["4xx"] += 1
        elif status == 503 and down:
            counts["503_while_down"] += 1
        elif status >= 500 and down:
            counts["other_5xx_while_down"] += 1
        elif status >= 500:
            counts["5xx_while_up"] += 1
        else:
            counts["no_answer"] += 1
    return {key: counts.get(key, 0) for key in ("2xx", "4xx", "503_while_down", "other_5xx_while_down",
                                                 "5xx_while_up", "no_answer")}


def half_written(photo_keys: Iterable[tuple[int, str]], stored: set[str], *, other_keys: Iterable[str] = ()) -> dict:
    """Photo rows whose stored image is missing (half-written: a row without its file), and stored files that
    no row names (``other_keys``: overlays, encrypted originals) — harmless leftovers of a failed upload or
    analysis, counted apart."""
    photo_keys = list(photo_keys)
    named = {key for _, key in photo_keys} | set(other_keys)
    return {"rows_without_file": sorted(photo_id for photo_id, key in photo_keys if key not in stored),
            "files_without_row": len({key for key in stored if key not in named})}


def percentile(values: list[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def load_averages() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


# --- processes -----------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(name: str, command: list[str], env: dict, logs: Path) -> subprocess.Popen:
    log = open(logs / f"{name}.log", "ab")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(process: subprocess.Popen, *, timeout: float = 15) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass


def fresh_database(url: str) -> None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    base = ["psql", "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432), "-U",
            parsed.username or "postgres", "-q", "-c"]
    subprocess.run(base + [f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'], check=True)
    subprocess.run(base + [f'CREATE DATABASE "{parsed.database}"'], check=True)


def redis_server(url: str, logs: Path, env: dict) -> subprocess.Popen:
    """A private, empty Redis (no snapshot, no append-only file) on the URL's port."""
    import redis

    port = url.rsplit(":", 1)[1].split("/")[0]
    server = start("redis", ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], env, logs)
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def wait_for(condition: Callable[[], object], seconds: float, *, poll: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - the thing asked may be the thing being restarted
            value = None
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what}: not reached within {seconds} s")


class Cut:
    """A loopback TCP relay to ``target`` that can be cut: `down` closes its listening socket (new
    connections are refused) and resets the open ones; `up` listens again on the same port."""

    def __init__(self, target_port: int, *, port: Optional[int] = None):
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: Optional[socket.socket] = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.is_down = False
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self.is_down = False
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="cut-accept").start()

    def down(self) -> None:
        self.is_down = True
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            for conn in list(self._open):
                _reset(conn)
            self._open.clear()

    def close(self) -> None:
        self.down()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for conn in (source, sink):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)


def _reset(conn: socket.socket) -> None:
    import struct

    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    except OSError:
        pass


@dataclass
class Stack:
    """``with Stack(logs, photo_workers=2) as stack:`` — web, scheduler, photo worker(s), Redis, PostgreSQL.

    ``storage``: ``local`` (a temporary folder) or ``s3`` (moto's server, reached through a `Cut` as
    ``stack.s3_cut``). ``twilio_url``: a Twilio-compatible base URL (the drills' `FakeTwilio`, behind a
    `Cut`); None sends no texts. ``extra_env`` overrides any variable (periods, limits)."""

    logs: Path
    database_url: str = field(default_factory=lambda: os.environ.get(
        "FAULTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/scarwatch_faults"))
    photo_workers: int = 1
    photo_nice: int = 10  # as deploy/stack.sh: the analyses yield the CPU to the web requests
    web_workers: int = 2
    web_threads: int = 4  # as deploy/stack.sh: a page need not wait while another request decodes an upload
    storage: str = "local"
    twilio: Optional[dict] = None
    messages_worker: bool = False
    scheduler: bool = True
    extra_env: dict = field(default_factory=dict)

    def __post_init__(self):
        self.logs.mkdir(parents=True, exist_ok=True)
        self.media_root = tempfile.mkdtemp(prefix="scarwatch-stack-media-")
        self.port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        self.s3_cut: Optional[Cut] = None
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.database_url, CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
            JOB_BACKEND="celery", STORAGE_BACKEND=self.storage, MEDIA_ROOT=self.media_root,
            SCHEDULER_ENABLED="0", PHOTO_STALE_SECONDS="6", PHOTO_RESEND_SECONDS="2",
            SECRET_KEY="stack-harness", LOG_LEVEL="WARNING", PUBLIC_BASE_URL=f"http://127.0.0.1:{self.port}",
            LOGIN_RATE_LIMIT="10000 per minute", ADDRESS_UPLOAD_RATE_LIMIT="100000 per hour",
            PYTHONPATH=str(REPO), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        )
        env["RATELIMIT_STORAGE_URI"] = env["CELERY_BROKER_URL"]
        for key in [k for k in env if k.startswith("TWILIO_")]:
            del env[key]
        env.update(self.twilio or {})
        env.update(self.extra_env)
        self.env = env

    # processes
    def __enter__(self) -> "Stack":
        env = self.env
        fresh_database(env["DATABASE_URL"])
        self.processes["redis"] = redis_server(env["CELERY_BROKER_URL"], self.logs, env)
        if self.storage == "s3":
            self._start_s3()
        subprocess.run(["flask", "--app", "app", "db", "upgrade"], cwd=REPO, env=env, check=True,
                       capture_output=True)
        self.start_web()
        if self.scheduler:
            self.processes["scheduler"] = start("scheduler", ["flask", "--app", "app", "scheduler"], env, self.logs)
        self.start_worker()
        if self.messages_worker:
            self.processes["messages"] = start("messages", [
                "celery", "-A", "make_celery", "worker", "--queues", "messages", "--concurrency", "1",
                "--hostname", "messages@%h", "--loglevel", "WARNING"], env, self.logs)
        from sqlalchemy import create_engine

        self.engine = create_engine(env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1),
                                    pool_pre_ping=True)
        wait_for(self.healthy, 60, what="web /healthz")
        return self

    def __exit__(self, *exc) -> None:
        for name in ("web", "scheduler", "worker", "messages", "s3", "redis"):
            if name in self.processes:
                stop(self.processes[name])
        if self.s3_cut is not None:
            self.s3_cut.close()
        if hasattr(self, "engine"):
            self.engine.dispose()
        subprocess.run(["rm", "-rf", self.media_root], check=False)

    def _start_s3(self) -> None:
        s3_port = free_port()
        self.env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                        S3_BUCKET="scarwatch")
        self.processes["s3"] = start("s3", [sys.executable, "deploy/s3_server.py", "--port", str(s3_port),
                                            "--bucket", "scarwatch"], self.env, self.logs)
        wait_for(lambda: _answers(s3_port), 60, what="moto S3 server")
        time.sleep(1.0)  # the bucket is created right after the server answers
        self.s3_cut = Cut(s3_port)
        self.s3_direct = f"http://127.0.0.1:{s3_port}"
        self.env["S3_ENDPOINT_URL"] = f"http://127.0.0.1:{self.s3_cut.port}"
        # an unreachable store fails a request within seconds, not after botocore's long default retries
        self.env.setdefault("AWS_MAX_ATTEMPTS", "2")
        self.env.setdefault("AWS_RETRY_MODE", "standard")

    def start_web(self) -> None:
        self.processes["web"] = start("web", [
            "gunicorn", "--workers", str(self.web_workers), "--threads", str(self.web_threads),
            "--bind", f"127.0.0.1:{self.port}", "--graceful-timeout", "5", "--no-control-socket",
            # each request's server time (µs, last field), to tell time in the handler from time waiting for a thread
            "--access-logfile", "-", "--access-logformat", "%(r)s %(s)s %(D)s",
            "app:create_app()"], self.env, self.logs)

    def start_worker(self) -> None:
        self.processes["worker"] = start("photos-worker", [
            "nice", "-n", str(self.photo_nice), "celery", "-A", "make_celery", "worker", "--queues", "photos",
            "--concurrency", str(self.photo_workers), "--hostname", "photos@%h", "--loglevel", "INFO"],
            self.env, self.logs)

    def healthy(self) -> bool:
        import requests

        return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def flask(self, *args: str) -> str:
        return subprocess.run(["flask", "--app", "app", *args], cwd=REPO, env=self.env, check=True,
                              capture_output=True, text=True).stdout

    # the database, read with plain SQL
    def sql(self, statement: str, **params) -> list:
        from sqlalchemy import text

        with self.engine.connect() as connection:
            return list(connection.execute(text(statement), params))

    def count(self, statuses: Iterable[str]) -> int:
        return self.sql("SELECT count(*) FROM photo WHERE status = ANY(:s)", s=list(statuses))[0][0]

    def photo_accounting(self, *, expected: Optional[int] = None) -> dict:
        photos = [(r[0], r[1]) for r in self.sql("SELECT id, status FROM photo")]
        analyses = [(r[0], r[1]) for r in self.sql("SELECT photo_id, comparison FROM analysis")]
        figures = analysed_once(photos, analyses, expected=expected)
        figures["attempts"] = dict(Counter(str(r[0]) for r in self.sql("SELECT attempts FROM photo")))
        keys = [(r[0], r[1]) for r in self.sql("SELECT id, storage_key FROM photo")]
        other = {r[0] for r in self.sql("SELECT original_key FROM photo WHERE original_key IS NOT NULL")}
        for (overlays,) in self.sql("SELECT overlays FROM analysis WHERE overlays IS NOT NULL"):
            other.update(v for v in (overlays or {}).values() if isinstance(v, str))
        figures["half_written"] = half_written(keys, self.stored_keys(), other_keys=other)
        return figures

    def stored_keys(self) -> set[str]:
        if self.storage == "local":
            return {path.name for path in Path(self.media_root).rglob("*.*") if not path.name.startswith(".tmp")}
        import boto3

        client = boto3.client("s3", endpoint_url=self.s3_direct, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        keys = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="scarwatch", Prefix="media/"):
            keys.update(item["Key"].removeprefix("media/") for item in page.get("Contents", []))
        return keys

    def wait_finished(self, seconds: float = 300) -> float:
        started = time.monotonic()
        wait_for(lambda: self.count(("queued", "processing")) == 0, seconds, what="every photo finished")
        return time.monotonic() - started


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Api:
    """The staff API and the patient's link page over HTTP (`requests`), as a client outside would use them."""

    def __init__(self, base_url: str, email: str, password: str):
        import requests

        self.base = base_url
        self.http = requests.Session()
        token = self.http.post(f"{base_url}/api/v1/auth/token", json={"email": email, "password": password},
                               timeout=30)
        token.raise_for_status()
        self.token = token.json()["token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def post(self, path: str, **json_body) -> dict:
        response = self.http.post(f"{self.base}/api/v1{path}", json=json_body, timeout=30)
        response.raise_for_status()
        return response.json()

    def enrol(self, n: int, *, excision_date: str, timezone_name: str = "Europe/London",
              phone_base: int = 7700900000) -> list[dict]:
        """``n`` consenting patients with one melanoma site each; returns the sites (with their plans)."""
        sites = []
        for i in range(n):
            patient = self.post("/patients", name=f"Drill Patient {i}", phone=f"+44{phone_base + i}",
                                sms_consent=True, timezone=timezone_name)
            sites.append(self.post(f"/patients/{patient['id']}/sites", body_site="left forearm",
                                   diagnosis="melanoma", stage="IIA", excision_date=excision_date))
        return sites

    def upload(self, site_id: int, data: bytes, *, kind: str, timeout: float = 60) -> tuple[int, dict, float]:
        """POST /api/v1/sites/{id}/photos; returns (status, body, seconds); status 0 when no answer came."""
        import requests

        started = time.perf_counter()
        try:
            response = self.http.post(f"{self.base}/api/v1/sites/{site_id}/photos",
                                      files={"file": ("photo.jpg", data, "image/jpeg")}, data={"kind": kind},
                                      timeout=timeout)
        except requests.RequestException as exc:
            return 0, {"error": str(exc)}, time.perf_counter() - started
        try:
            body = response.json()
        except ValueError:
            body = {"text": response.text[:200]}
        return response.status_code, body, time.perf_counter() - started

    def upload_link(self, site_id: int) -> str:
        return self.post(f"/sites/{site_id}/upload-link")["url"]
