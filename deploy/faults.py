"""Fault drills against real processes (``make faults``): PostgreSQL, Redis, a Celery photo worker, the scheduler.

Each drill uploads a baseline and ``--photos`` follow-ups (through `followup.intake.photos.receive_photo`, the function
behind the API and the patient's page, with ``JOB_BACKEND=celery``), breaks something while they are analysed,
and checks that every photo ends analysed exactly once: a terminal status, no duplicate analyses.

- ``kill-worker``: kill -9 the worker's pool process the moment a photo is ``processing`` (``--kills`` times),
  the last time the whole worker (main process too), which is then started again.
- ``redis-wipe``: kill -9 Redis while photos wait in its queue and start it again empty on the same port.
- ``postgres-restart``: stop PostgreSQL at once (``-m immediate``, as a crash) while a photo is analysed, and
  start it again 2 s later; this drill runs its own throw-away cluster (``initdb`` on a free port, as the
  ``postgres`` user), so no other database goes down.

Prints the figures as JSON; exit status 1 when a photo is lost, stuck or analysed twice. The drills use a
PostgreSQL database of their own, dropped and created again (``FAULTS_DATABASE_URL``, default
``postgresql://postgres@127.0.0.1:5432/scarwatch_faults``), a private ``redis-server`` on a free loopback port
(no other Redis is touched), local storage in a temporary folder, and short periods (``PHOTO_STALE_SECONDS=6``,
``PHOTO_RESEND_SECONDS=2``), so a drill takes about a minute.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the app and its packages
PHOTOS = sorted((REPO / "followup" / "demo_photos").glob("*.jpg"))


def _environment(media_root: str, database_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url or os.environ.get("FAULTS_DATABASE_URL",
                                                    "postgresql://postgres@127.0.0.1:5432/scarwatch_faults"),
        CELERY_BROKER_URL=f"redis://127.0.0.1:{_free_port()}/0",
        JOB_BACKEND="celery", STORAGE_BACKEND="local", MEDIA_ROOT=media_root, SCHEDULER_ENABLED="0",
        PHOTO_STALE_SECONDS="6", PHOTO_RESEND_SECONDS="2", SECRET_KEY="fault-drill", LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _redis_server(env: dict, logs: Path) -> subprocess.Popen:
    """A private, empty Redis (no snapshot, no append-only file) on the broker URL's port."""
    import redis

    port = env["CELERY_BROKER_URL"].rsplit(":", 1)[1].split("/")[0]
    server = _start("redis", ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], env, logs)
    client = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    for _ in range(100):
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def _fresh_database(url: str) -> None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    base = ["psql", "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432), "-U",
            parsed.username or "postgres", "-q", "-c"]
    subprocess.run(base + [f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'], check=True)
    subprocess.run(base + [f'CREATE DATABASE "{parsed.database}"'], check=True)


def _start(name: str, command: list[str], env: dict, logs: Path) -> subprocess.Popen:
    log = open(logs / f"{name}.log", "ab")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _worker(env: dict, logs: Path) -> subprocess.Popen:
    return _start("photos-worker", ["celery", "-A", "make_celery", "worker", "--queues", "photos",
                                    "--concurrency", "1", "--loglevel", "INFO"], env, logs)


def _pool_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


class Drill:
    """The processes, the app and an enrolled site: ``with Drill(logs) as drill: ...``."""

    def __init__(self, logs: Path, database_url: str | None = None):
        self.logs = logs
        self.env = _environment(tempfile.mkdtemp(prefix="scarwatch-faults-"), database_url)
        self.processes: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> "Drill":
        env = self.env
        _fresh_database(env["DATABASE_URL"])
        self.processes["redis"] = _redis_server(env, self.logs)
        subprocess.run(["flask", "--app", "app", "db", "upgrade"], cwd=REPO, env=env, check=True,
                       capture_output=True)
        os.environ.update(env)
        from app import create_app

        self.processes["scheduler"] = _start("scheduler", ["flask", "--app", "app", "scheduler"], env, self.logs)
        self.processes["worker"] = _worker(env, self.logs)
        self.app = create_app()
        self.context = self.app.app_context()
        self.context.push()
        return self

    def __exit__(self, *exc) -> None:
        from followup.db import db

        db.session.remove()
        db.engine.dispose()
        self.context.pop()
        for name in ("worker", "scheduler", "redis"):
            _stop(self.processes[name])

    def upload(self, photos: int) -> float:
        """Enrol a site, upload its baseline (waited for) and ``photos`` follow-ups; returns the start time."""
        from followup.records.accounts import create_user
        from followup.db import db
        from followup.models import Clinic
        from followup.records.patients import create_patient, create_site
        from followup.intake.photos import receive_photo

        clinic = Clinic(name="Drill clinic")
        db.session.add(clinic)
        derm = create_user(clinic, email="derm@drill.test", password="drill-password-1", role="dermatologist")
        patient = create_patient(clinic, name="Drill Patient", phone="+447700900999", sms_consent=True)
        site = create_site(patient, body_site="left forearm", diagnosis="melanoma", stage="IIA",
                           excision_date=date.today() - timedelta(days=90), dermatologist=derm)
        db.session.commit()
        started = time.monotonic()
        receive_photo(site, PHOTOS[0].read_bytes(), kind="baseline")
        _wait(lambda: _count(("done", "rejected", "failed")) == 1, 120)
        for i in range(photos):
            receive_photo(site, PHOTOS[1 + i % (len(PHOTOS) - 1)].read_bytes(), kind="followup")
        return started

    def figures(self, started: float, photos: int) -> dict:
        """Wait until no photo is queued or processing; what became of them."""
        from sqlalchemy import select

        from followup.db import db
        from followup.models import Analysis, Photo

        _wait(lambda: _count(("queued", "processing")) == 0, 300)
        figures: dict = {"seconds": round(time.monotonic() - started, 1)}
        db.session.expire_all()
        rows = db.session.execute(select(Photo.id, Photo.status, Photo.attempts)).all()
        figures["outcomes"] = dict(Counter(row.status for row in rows))
        figures["attempts"] = dict(Counter(str(row.attempts) for row in rows))
        per_photo = Counter(db.session.execute(select(Analysis.photo_id, Analysis.comparison)).all())
        figures["duplicate_analyses"] = sum(n - 1 for n in per_photo.values() if n > 1)
        analysed = {photo_id for photo_id, _ in per_photo}
        figures["finished_without_analysis"] = [row.id for row in rows
                                                if row.status in ("done", "rejected") and row.id not in analysed]
        figures["ok"] = (len(rows) == photos + 1 and figures["duplicate_analyses"] == 0
                         and not figures["finished_without_analysis"])
        figures["attempts_by_photo"] = {row.id: row.attempts for row in rows}
        return figures


def _count(statuses) -> int:
    from sqlalchemy import func, select

    from followup.db import db
    from followup.models import Photo

    return db.session.execute(select(func.count()).select_from(Photo).where(Photo.status.in_(statuses))).scalar_one()


def drill_kill_worker(photos: int, kills: int, logs: Path) -> dict:
    from sqlalchemy import select

    from followup.db import db
    from followup.models import Photo

    with Drill(logs) as drill:
        started = drill.upload(photos)
        processes, env = drill.processes, drill.env
        figures: dict = {"drill": "kill -9 an analysis worker mid-photo", "photos": photos + 1, "kills": []}
        for k in range(kills):
            whole = k == kills - 1
            killed = [kill["photo_id"] for kill in figures["kills"]]  # (left processing until stale)
            photo_id = _wait(lambda: db.session.execute(
                select(Photo.id).where(Photo.status == "processing", Photo.id.notin_(killed))).scalar(),
                120, poll=0.005)
            worker = processes["worker"]
            if whole:
                os.killpg(worker.pid, signal.SIGKILL)  # the main process and its pool: nobody requeues
                worker.wait()
                processes["worker"] = _worker(env, logs)
            else:
                for child in _pool_children(worker.pid):
                    os.kill(child, signal.SIGKILL)
            figures["kills"].append({"photo_id": photo_id, "whole_worker": whole,
                                     "at_s": round(time.monotonic() - started, 2)})
            time.sleep(0.5)
        result = drill.figures(started, photos)
    attempts = result.pop("attempts_by_photo")
    for kill in figures["kills"]:
        kill["photo_attempts"] = attempts.get(kill["photo_id"])
    return {**figures, **result}


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free loopback port (run as the ``postgres`` user), so that a drill
    can crash and restart it without touching any other database."""

    def __init__(self, logs: Path):
        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self.port = _free_port()
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
        with Drill(logs, postgres.url("scarwatch_faults")) as drill:
            started = drill.upload(photos)
            _wait(lambda: _count(("processing",)) >= 1 and _count(("done", "rejected", "failed")) >= 2, 120,
                  poll=0.01)
            postgres.crash()
            down = time.monotonic()
            time.sleep(2)
            postgres.start()
            figures = {"drill": "PostgreSQL crashed (immediate stop) and started again, mid-run",
                       "photos": photos + 1, "postgres_down_s": round(time.monotonic() - down, 1)}
            result = drill.figures(started, photos)
        result.pop("attempts_by_photo")
        return {**figures, **result}
    finally:
        postgres.remove()


def drill_redis_wipe(photos: int, logs: Path) -> dict:
    import redis

    with Drill(logs) as drill:
        started = drill.upload(photos)
        _wait(lambda: _count(("done", "rejected", "failed")) >= 2, 120, poll=0.02)  # mid-run
        client = redis.Redis.from_url(drill.env["CELERY_BROKER_URL"])
        waiting = client.llen("photos")  # messages (a photo waiting long may have been sent more than once)
        queued = _count(("queued",))
        os.killpg(drill.processes["redis"].pid, signal.SIGKILL)
        drill.processes["redis"].wait()
        finished_before = _count(("done", "rejected", "failed"))
        time.sleep(1)
        drill.processes["redis"] = _redis_server(drill.env, logs)
        figures = {"drill": "Redis killed and started again empty, mid-run", "photos": photos + 1,
                   "finished_before_restart": finished_before, "photos_queued_at_wipe": queued,
                   "messages_wiped": waiting,
                   "redis_down_s": 1.0}
        result = drill.figures(started, photos)
    result.pop("attempts_by_photo")
    return {**figures, **result}


def _wait(condition, seconds: float, *, poll: float = 0.2):
    from followup.db import db

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.expire_all()
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - the database may be the thing being restarted
            value = None
        db.session.rollback()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"not reached within {seconds} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12, help="follow-up photos uploaded (besides the baseline)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs; the last one takes the whole worker")
    parser.add_argument("--drill", choices=("all", "kill-worker", "redis-wipe", "postgres-restart"), default="all")
    parser.add_argument("--logs", default=str(REPO / "bench-out" / "faults"), help="the processes' logs")
    args = parser.parse_args()
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    if args.drill in ("all", "kill-worker"):
        results.append(drill_kill_worker(args.photos, args.kills, logs))
        print(json.dumps(results[-1]), flush=True)
    if args.drill in ("all", "redis-wipe"):
        results.append(drill_redis_wipe(args.photos, logs))
        print(json.dumps(results[-1]), flush=True)
    if args.drill in ("all", "postgres-restart"):
        results.append(drill_postgres_restart(args.photos, logs))
        print(json.dumps(results[-1]), flush=True)
    sys.exit(0 if all(result["ok"] for result in results) else 1)


if __name__ == "__main__":
    main()
