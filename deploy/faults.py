"""Fault drills against real processes (``make faults``): PostgreSQL, Redis, a Celery photo worker, the scheduler.

Drill 1 — kill -9 an analysis worker mid-photo. A baseline and ``--photos`` follow-ups are uploaded (through
`followup.photos.receive_photo`, the function behind the API and the patient's page, with ``JOB_BACKEND=celery``);
while they are analysed, the worker's pool process is killed with SIGKILL the moment a photo is in
``processing`` (``--kills`` times), and the last time the whole worker (main process too), which is then
started again. Every photo must end analysed exactly once: a terminal status, analyses of one attempt only.
Prints the figures as JSON; exit status 1 when a photo is lost, stuck or analysed twice.

It uses a database and a Redis database of its own, emptied first (``FAULTS_DATABASE_URL``, default
``postgresql://postgres@127.0.0.1:5432/scarwatch_faults``; ``FAULTS_REDIS_URL``, default
``redis://127.0.0.1:6379/9``), local storage in a temporary folder, and short periods
(``PHOTO_STALE_SECONDS=6``, ``PHOTO_RESEND_SECONDS=2``) so a drill takes about a minute.
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


def _environment(media_root: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=os.environ.get("FAULTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/scarwatch_faults"),
        CELERY_BROKER_URL=os.environ.get("FAULTS_REDIS_URL", "redis://127.0.0.1:6379/9"),
        JOB_BACKEND="celery", STORAGE_BACKEND="local", MEDIA_ROOT=media_root, SCHEDULER_ENABLED="0",
        PHOTO_STALE_SECONDS="6", PHOTO_RESEND_SECONDS="2", SECRET_KEY="fault-drill", LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    return env


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


def drill_kill_worker(photos: int, kills: int, logs: Path) -> dict:
    media = tempfile.mkdtemp(prefix="scarwatch-faults-")
    env = _environment(media)
    _fresh_database(env["DATABASE_URL"])
    import redis

    redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
    subprocess.run(["flask", "--app", "app", "db", "upgrade"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    os.environ.update(env)
    from sqlalchemy import func, select

    from app import create_app
    from followup.accounts import create_user
    from followup.db import db
    from followup.models import Analysis, Clinic, Photo
    from followup.patients import create_patient, create_site
    from followup.photos import receive_photo

    processes = {"scheduler": _start("scheduler", ["flask", "--app", "app", "scheduler"], env, logs),
                 "worker": _worker(env, logs)}
    figures: dict = {"drill": "kill -9 an analysis worker mid-photo", "photos": photos + 1, "kills": []}
    app = create_app()
    try:
        with app.app_context():
            clinic = Clinic(name="Drill clinic")
            db.session.add(clinic)
            derm = create_user(clinic, email="derm@drill.test", password="drill-password-1", role="dermatologist")
            patient = create_patient(clinic, name="Drill Patient", phone="+447700900999", sms_consent=True)
            site = create_site(patient, body_site="left forearm", diagnosis="melanoma", stage="IIA",
                               excision_date=date.today() - timedelta(days=90), dermatologist=derm)
            db.session.commit()
            started = time.monotonic()
            receive_photo(site, PHOTOS[0].read_bytes(), kind="baseline")
            _wait(lambda: db.session.execute(select(func.count()).select_from(Photo)
                                             .where(Photo.status.in_(("done", "rejected", "failed")))).scalar_one()
                  == 1, 120)
            for i in range(photos):
                receive_photo(site, PHOTOS[1 + i % (len(PHOTOS) - 1)].read_bytes(), kind="followup")
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
            _wait(lambda: db.session.execute(select(func.count()).select_from(Photo)
                                             .where(Photo.status.in_(("queued", "processing")))).scalar_one()
                  == 0, 300)
            figures["seconds"] = round(time.monotonic() - started, 1)
            db.session.expire_all()
            rows = db.session.execute(select(Photo.id, Photo.status, Photo.attempts)).all()
            figures["outcomes"] = dict(Counter(row.status for row in rows))
            figures["attempts"] = dict(Counter(str(row.attempts) for row in rows))
            per_photo = Counter(db.session.execute(select(Analysis.photo_id, Analysis.comparison)).all())
            figures["duplicate_analyses"] = sum(n - 1 for n in per_photo.values() if n > 1)
            analysed = {photo_id for photo_id, _ in per_photo}
            figures["finished_without_analysis"] = [row.id for row in rows
                                                    if row.status in ("done", "rejected") and row.id not in analysed]
            attempts = {row.id: row.attempts for row in rows}
            for kill in figures["kills"]:
                kill["photo_attempts"] = attempts.get(kill["photo_id"])
    finally:
        for process in processes.values():
            _stop(process)
    figures["ok"] = (figures["outcomes"].get("queued", 0) + figures["outcomes"].get("processing", 0) == 0
                     and sum(figures["outcomes"].values()) == photos + 1
                     and figures["duplicate_analyses"] == 0 and not figures["finished_without_analysis"])
    return figures


def _wait(condition, seconds: float, *, poll: float = 0.2):
    from followup.db import db

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.expire_all()
        value = condition()
        db.session.rollback()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"not reached within {seconds} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12, help="follow-up photos uploaded (besides the baseline)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs; the last one takes the whole worker")
    parser.add_argument("--logs", default=str(REPO / "bench-out" / "faults"), help="the processes' logs")
    args = parser.parse_args()
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    figures = drill_kill_worker(args.photos, args.kills, logs)
    print(json.dumps(figures, indent=2))
    sys.exit(0 if figures["ok"] else 1)


if __name__ == "__main__":
    main()
