"""``flask --app app serve`` (``make run``): gunicorn with one worker process, and the photo worker and the
reminder scheduler running inside that worker process, not in the master."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

from app import create_app
from followup.db import db
from followup.demo import DERM
from followup.intake.photos import receive_photo
from followup.models import Clinic, Photo
from followup.outreach.scheduler import lease_holder
from followup.records.accounts import create_user
from followup.records.patients import create_patient, create_site
from tests.conftest import REPO, base_config, jpeg_bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_runs_gunicorn_with_worker_and_scheduler_in_its_worker(tmp_path):
    config = base_config(tmp_path)
    app = create_app(config)
    with app.app_context():
        db.create_all()
        clinic = Clinic(name="Serve Clinic")
        db.session.add(clinic)
        db.session.flush()
        create_user(clinic, email=DERM[0], password=DERM[1], role="dermatologist")
        patient = create_patient(clinic, name="Queued Photo", phone="+447700900999", sms_consent=False)
        site = create_site(patient, body_site="arm", diagnosis="bcc", excision_date=date(2026, 1, 5))
        db.session.commit()
        photo_id = receive_photo(site, jpeg_bytes(640, 480), kind="baseline", enqueue=False).id
        db.session.remove()
        db.engine.dispose()

    port = free_port()
    env = {**os.environ, "DATABASE_URL": config["DATABASE_URL"], "MEDIA_ROOT": config["MEDIA_ROOT"],
           "SECRET_KEY": "serve-test", "SCHEDULER_ENABLED": "1", "LOG_LEVEL": "WARNING", "PORT": str(port)}
    flask = str(Path(sys.executable).parent / "flask")
    server = subprocess.Popen([flask, "--app", "app", "serve", "--port", str(port), "--threads", "4"], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        lines: list[str] = []

        def banner_seen():
            line = server.stdout.readline()
            lines.append(line)
            return "Ctrl-C stops it" in line or server.poll() is not None

        wait_for(banner_seen, 60, "the banner")
        output = "".join(lines)
        assert f"serving at http://127.0.0.1:{port}" in output and "gunicorn" in output.lower(), output
        assert f"{DERM[0]} / {DERM[1]}" in output, "the banner names the demo sign-in"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            assert answer.status == 200 and answer.headers["Server"].startswith("gunicorn")

        with app.app_context():
            def photo_done():
                db.session.expire_all()
                return db.session.get(Photo, photo_id).status in ("done", "rejected")

            wait_for(photo_done, 60, "the worker to analyse the queued photo")
            holder = wait_for(lease_holder, 30, "the scheduler's lease")
            scheduler_pid = int(holder.holder.split(":")[1])
            db.session.remove()
            db.engine.dispose()
        assert scheduler_pid != server.pid, "the scheduler runs in gunicorn's worker, not in its master"
        parent = int(Path(f"/proc/{scheduler_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert parent == server.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
