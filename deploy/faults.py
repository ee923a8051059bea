"""Fault drills against real processes (``make faults``): PostgreSQL, Redis, a Celery photo worker, the scheduler,
gunicorn, S3 (moto) and Twilio (the loopback `FakeTwilio`).

Each photo drill starts the stack (`deploy.harness.Stack`), enrols a site and uploads a baseline and ``--photos``
follow-ups through the real upload route (``POST /api/v1/sites/{id}/photos`` on gunicorn), breaks something, and
checks that every accepted photo ends analysed exactly once: a terminal status, no duplicate analyses, no row
without its stored image.

- ``kill-worker``: kill -9 the worker's pool process the moment a photo is ``processing`` (``--kills`` times),
  the last time the whole worker (main process too), which is then started again.
- ``redis-wipe``: kill -9 Redis while photos wait in its queue and start it again empty on the same port.
- ``postgres-restart``: stop PostgreSQL at once (``-m immediate``, as a crash) while a photo is analysed, and
  start it again 2 s later; this drill runs its own throw-away cluster (``initdb`` on a free port, as the
  ``postgres`` user), so no other database goes down.
- ``storage-down``: the S3 store (moto's server, reached through a relay that can be cut) becomes unreachable
  in the middle of the uploads and of the analyses, for ``--outage`` seconds, then comes back.
- ``twilio-down``: a reminder sweep at a simulated time sends texts to ``--patients`` due patients; after the
  first few, Twilio goes down (connections refused, the ones open reset) and, half an hour of simulated time
  later, answers 503 to everything; sweeps go on every few simulated minutes; after an hour Twilio recovers.

After each drill one JSON line: ``photos_analysed_exactly_once``, ``texts_delivered_exactly_once``, the HTTP
answers (2xx, 4xx, 503 while a dependency was down — allowed, counted apart —, other 5xx), ``half_written_rows``
and the details; exit status 1 when a photo or a text is lost, stuck or doubled, or a 5xx came while everything
was up. Databases: ``FAULTS_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/scarwatch_faults``),
dropped and created again; a private ``redis-server`` on a free loopback port; short periods
(``PHOTO_STALE_SECONDS=6``, ``PHOTO_RESEND_SECONDS=2``).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: deploy.harness

from deploy.harness import (  # noqa: E402
    Api,
    Cut,
    Stack,
    delivered_once,
    free_port,
    http_counts,
    load_averages,
    wait_for,
)

PHOTOS = sorted((REPO / "followup" / "demo_photos").glob("*.jpg"))
EMAIL, PASSWORD = "derm@drill.test", "drill-password-1"


def _staff(stack: Stack) -> Api:
    stack.flask("create-user", "--email", EMAIL, "--password", PASSWORD, "--role", "dermatologist")
    return Api(stack.url, EMAIL, PASSWORD)


class Uploads:
    """Uploads through the API, each answer recorded with whether a dependency was down at the time."""

    def __init__(self, stack: Stack, api: Api):
        self.stack, self.api = stack, api
        self.answers: list[tuple[int, bool]] = []
        self.accepted: list[int] = []
        self.down = False
        self.site = api.enrol(1, excision_date=(date.today() - timedelta(days=90)).isoformat())[0]

    def one(self, data: bytes, kind: str) -> int:
        down = self.down
        status, body, _ = self.api.upload(self.site["id"], data, kind=kind)
        self.answers.append((status, down or self.down))
        if status >= 500:
            self.last_error = {"status": status, "body": body}
        if status == 202:
            self.accepted.append(body["id"])
        return status

    def baseline_and_followups(self, photos: int) -> float:
        started = time.monotonic()
        if self.one(PHOTOS[0].read_bytes(), "baseline") != 202:
            raise RuntimeError("the baseline upload failed")
        wait_for(lambda: self.stack.count(("done", "rejected", "failed")) == 1, 120, what="baseline analysed")
        for i in range(photos):
            self.one(PHOTOS[1 + i % (len(PHOTOS) - 1)].read_bytes(), "followup")
        return started


def _report(name: str, stack: Stack, uploads: Uploads, started: float, extra: dict,
            texts: dict | None = None) -> dict:
    stack.wait_finished(300)
    photos = stack.photo_accounting(expected=len(uploads.accepted))
    http = http_counts(uploads.answers)
    rows = photos["half_written"]["rows_without_file"]
    result = {
        "drill": name,
        "photos_analysed_exactly_once": f"{photos['analysed_exactly_once']}/{len(uploads.accepted)}",
        "texts_delivered_exactly_once": (None if texts is None
                                         else f"{texts['delivered_exactly_once']}/{texts['texts_due']}"),
        "http": http, "half_written_rows": len(rows),
        "seconds": round(time.monotonic() - started, 1), "load": load_averages(),
        **extra, "photos": photos, **({"texts": texts} if texts else {}),
    }
    result["ok"] = (photos["ok"] and not rows and http["5xx_while_up"] == 0 and http["no_answer"] == 0
                    and (texts is None or texts["ok"]))
    return result


def _pool_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


def drill_kill_worker(photos: int, kills: int, logs: Path) -> dict:
    with Stack(logs) as stack:
        uploads = Uploads(stack, _staff(stack))
        started = uploads.baseline_and_followups(photos)
        done_kills: list[dict] = []
        for k in range(kills):
            whole = k == kills - 1
            killed = [kill["photo_id"] for kill in done_kills] or [0]  # (left processing until stale)
            photo_id = wait_for(lambda: (stack.sql(
                "SELECT id FROM photo WHERE status = 'processing' AND NOT (id = ANY(:k)) LIMIT 1", k=killed)
                or [[None]])[0][0], 120, poll=0.005, what="a photo processing")
            worker = stack.processes["worker"]
            if whole:
                os.killpg(worker.pid, signal.SIGKILL)  # the main process and its pool: nobody requeues
                worker.wait()
                stack.start_worker()
            else:
                for child in _pool_children(worker.pid):
                    os.kill(child, signal.SIGKILL)
            done_kills.append({"photo_id": photo_id, "whole_worker": whole,
                               "at_s": round(time.monotonic() - started, 2)})
            time.sleep(0.5)
        result = _report("kill -9 an analysis worker mid-photo", stack, uploads, started, {"kills": done_kills})
        attempts = dict(stack.sql("SELECT id, attempts FROM photo"))
    for kill in done_kills:
        kill["photo_attempts"] = attempts.get(kill["photo_id"])
    return result


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free loopback port (run as the ``postgres`` user), so that a drill
    can crash and restart it without touching any other database."""

    def __init__(self, logs: Path):
        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="scarwatch-faults-pg-"))
        self.log = logs / "postgres.log"
        for path in (self.data, logs):
            subprocess.run(["chown", "postgres", str(path)], check=True)
        self._as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"])
        self.start()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, command: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--"] + command, check=True, capture_output=True)

    def start(self) -> None:
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-o",
                           f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1", "start"])

    def crash(self) -> None:
        """Stop at once, as a crash would (``-m immediate``: no checkpoint, crash recovery at the next start)."""
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"])

    def remove(self) -> None:
        try:
            self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"])
        finally:
            subprocess.run(["rm", "-rf", str(self.data)], check=False)


def drill_postgres_restart(photos: int, logs: Path) -> dict:
    postgres = PrivatePostgres(logs)
    try:
        with Stack(logs, database_url=postgres.url("scarwatch_faults")) as stack:
            uploads = Uploads(stack, _staff(stack))
            started = uploads.baseline_and_followups(photos)
            wait_for(lambda: stack.count(("processing",)) >= 1 and stack.count(("done", "rejected", "failed")) >= 2,
                     120, poll=0.01, what="mid-run")
            postgres.crash()
            down = time.monotonic()
            time.sleep(2)
            postgres.start()
            extra = {"postgres_down_s": round(time.monotonic() - down, 1)}
            return _report("PostgreSQL crashed (immediate stop) and started again, mid-run", stack, uploads,
                           started, extra)
    finally:
        postgres.remove()


def drill_redis_wipe(photos: int, logs: Path) -> dict:
    import redis

    with Stack(logs) as stack:
        uploads = Uploads(stack, _staff(stack))
        started = uploads.baseline_and_followups(photos)
        wait_for(lambda: stack.count(("done", "rejected", "failed")) >= 2, 120, poll=0.02, what="mid-run")
        client = redis.Redis.from_url(stack.env["CELERY_BROKER_URL"])
        waiting = client.llen("photos")  # messages (a photo waiting long may have been sent more than once)
        queued = stack.count(("queued",))
        os.killpg(stack.processes["redis"].pid, signal.SIGKILL)
        stack.processes["redis"].wait()
        finished_before = stack.count(("done", "rejected", "failed"))
        time.sleep(1)
        from deploy.harness import redis_server

        stack.processes["redis"] = redis_server(stack.env["CELERY_BROKER_URL"], logs, stack.env)
        extra = {"finished_before_restart": finished_before, "photos_queued_at_wipe": queued,
                 "messages_wiped": waiting, "redis_down_s": 1.0}
        return _report("Redis killed and started again empty, mid-run", stack, uploads, started, extra)


def drill_storage_down(photos: int, outage: float, logs: Path) -> dict:
    """S3 unreachable mid-run: uploads keep coming while it is cut; the worker's reads fail and are retried."""
    # A retry after 5 s, then 20 s: a photo caught by the outage gets its 3 attempts over ~25 s.
    with Stack(logs, storage="s3", extra_env={"PHOTO_RETRY_SECONDS": "5"}) as stack:
        uploads = Uploads(stack, _staff(stack))
        started = uploads.baseline_and_followups(photos // 2)
        wait_for(lambda: stack.count(("processing",)) >= 1, 120, poll=0.01, what="a photo processing")
        uploads.down = True
        stack.s3_cut.down()
        cut_at = time.monotonic()
        during, refused = [], []
        while time.monotonic() - cut_at < outage:  # the patients go on uploading into the outage
            t = time.perf_counter()
            photo = PHOTOS[1 + len(during) % (len(PHOTOS) - 1)]
            status = uploads.one(photo.read_bytes(), "followup")
            during.append((status, round((time.perf_counter() - t) * 1000)))
            if status != 202:
                refused.append(photo)
            time.sleep(0.5)
        stack.s3_cut.up()
        uploads.down = False
        back_at = time.monotonic()
        # After recovery: the refused photos sent again (the patient was told to try later), then the rest.
        retried = [uploads.one(photo.read_bytes(), "followup") for photo in refused]
        for i in range(photos - photos // 2):
            uploads.one(PHOTOS[1 + (i + 5) % (len(PHOTOS) - 1)].read_bytes(), "followup")
        extra = {"storage_down_s": round(back_at - cut_at, 1),
                 "uploads_during_outage": {"statuses": dict(Counter(s for s, _ in during)),
                                           "ms_max": max((ms for _, ms in during), default=None)},
                 "an_error_answer": getattr(uploads, "last_error", None),
                 "refused_then_sent_again_after_recovery": dict(Counter(retried))}
        result = _report("S3 storage unreachable mid-run (uploads and analyses)", stack, uploads, started, extra)
        result["photos_failed_for_review"] = stack.count(("failed",))
        return result


# --- Twilio down for an hour of simulated time ---------------------------------------------------------------

def drill_twilio_down(patients: int, logs: Path) -> dict:
    from notifications.testing import FakeTwilio

    fake = FakeTwilio().start()
    cut = Cut(int(fake.base_url.rsplit(":", 1)[1]))
    twilio = fake.config(timeout_seconds=3)
    twilio["TWILIO_API_BASE_URL"] = f"http://127.0.0.1:{cut.port}"
    try:
        # The sweeps are `flask reminders dispatch --now` (simulated time); no scheduler sweeps in real time.
        with Stack(logs, twilio=twilio, scheduler=False) as stack:
            api = _staff(stack)
            sites = api.enrol(patients, excision_date=(date.today() - timedelta(days=30)).isoformat())
            due = min(d for d in (date.fromisoformat(v["due_date"]) for v in sites[0]["plan"]["photos"])
                      if d > date.today())  # a photo request: the text with a link goes out on the day
            t0 = datetime.combine(due, datetime.min.time(), timezone.utc).replace(hour=10)  # 10:00 in London
            started = time.monotonic()
            sweeps = []

            def sweep(minutes: float) -> dict:
                now = t0 + timedelta(minutes=minutes)
                summary = json.loads(stack.flask("reminders", "dispatch", "--now", now.isoformat()).strip()
                                     .splitlines()[-1])
                sweeps.append({"at_min": minutes, "twilio": state["twilio"], **{
                    k: summary.get(k, 0) for k in ("sent", "failed", "unknown", "queued", "errors") if k in summary}})
                return summary

            state = {"twilio": "up"}
            first = threading.Thread(target=sweep, args=(0,))
            first.start()  # the sweep starts sending; after the first texts Twilio goes away
            wait_for(lambda: len(fake.messages) >= min(3, patients), 120, poll=0.005, what="first texts sent")
            cut.down()
            cut_at = time.monotonic()
            state["twilio"] = "refusing connections"
            sent_before = len(fake.messages)
            first.join()
            for minutes in (5, 10, 20, 30):
                sweep(minutes)
            cut.up()
            fake.fail_next(1_000_000, status=503)  # the half hour after: up, answering 503 to everything
            state["twilio"] = "503"
            for minutes in (40, 50, 59):
                sweep(minutes)
            fake.clear_faults()
            state["twilio"] = "up"
            for minutes in (60, 65, 75, 90):  # back: the backoff (at most 15 min) brings every row
                sweep(minutes)
            # A send whose connection was reset has an unknown outcome: it is looked up at Twilio, never resent
            # blindly, and "not found" counts only once the attempt is 120 s old in real time (the sender's
            # lookup_settle_seconds): so the last sweeps wait for the real clock.
            minutes = 90
            while stack.sql("SELECT count(*) FROM outbound_message WHERE status IN ('unknown', 'pending', "
                            "'sending')")[0][0] and time.monotonic() - cut_at < 240:
                time.sleep(10)
                minutes += 10
                sweep(minutes)
            outbox = [tuple(r) for r in stack.sql("SELECT id, \"to\", status, twilio_sid FROM outbound_message")]
            texts = delivered_once(outbox, [(m.sid, m.to) for m in fake.messages])
            texts["sent_before_outage"] = sent_before
            texts["real_seconds_from_outage_to_last_sweep"] = round(time.monotonic() - cut_at, 1)
            uploads = type("NoUploads", (), {"answers": [], "accepted": []})()
            return _report("Twilio down for an hour of simulated time during a sweep", stack, uploads, started,
                           {"sweeps": sweeps, "twilio_requests": len(fake.requests)}, texts=texts)
    finally:
        cut.close()
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12, help="follow-up photos uploaded (besides the baseline)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs; the last one takes the whole worker")
    parser.add_argument("--outage", type=float, default=8.0, help="seconds the storage is unreachable")
    parser.add_argument("--patients", type=int, default=20, help="patients due a text in the Twilio drill")
    drills = ("kill-worker", "redis-wipe", "postgres-restart", "storage-down", "twilio-down")
    parser.add_argument("--drill", choices=("all",) + drills, default="all")
    parser.add_argument("--logs", default=str(REPO / "bench-out" / "faults"), help="the processes' logs")
    args = parser.parse_args()
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    runs = {
        "kill-worker": lambda: drill_kill_worker(args.photos, args.kills, logs),
        "redis-wipe": lambda: drill_redis_wipe(args.photos, logs),
        "postgres-restart": lambda: drill_postgres_restart(args.photos, logs),
        "storage-down": lambda: drill_storage_down(args.photos, args.outage, logs),
        "twilio-down": lambda: drill_twilio_down(args.patients, logs),
    }
    results = []
    for name in drills:
        if args.drill in ("all", name):
            results.append(runs[name]())
            print(json.dumps(results[-1]), flush=True)
    for result in results:
        print(f"{result['drill']}: photos analysed exactly once {result['photos_analysed_exactly_once']}, texts "
              f"delivered exactly once {result['texts_delivered_exactly_once'] or 'n/a (no texts due)'}, HTTP "
              f"{result['http']}, half-written rows {result['half_written_rows']}, {result['seconds']} s, "
              f"{result['load']}: {'OK' if result['ok'] else 'FAILED'}", flush=True)
    sys.exit(0 if all(result["ok"] for result in results) else 1)


if __name__ == "__main__":
    main()
