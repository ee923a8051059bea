"""Benchmark: one reminder sweep with 10,000 patients due, against the loopback Twilio (target ≤ 60 s, 0 duplicates).

    .venv/bin/python -m bench.reminders_bench [--patients 10000] [--database-url URL] [--concurrency 8]

The fake Twilio server runs in its own process (as Twilio would: its work is not this process's), the app
sends through the real twilio client. Setting up the patients is not timed; the sweep is: planning the
reminder rows, deciding, minting 10,000 one-time links, rendering texts, the outbox, and every HTTP request.
Prints one JSON line: ``seconds``, ``sent``, ``messages_at_twilio``, ``duplicates``, ``per_second``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DUE = date(2027, 2, 4)
SWEEP_AT = datetime(2027, 2, 4, 10, 0, tzinfo=timezone.utc)  # 10:00 in London (GMT)


def _serve_fake_twilio(address_queue: "mp.Queue", stop: "mp.Event", result_queue: "mp.Queue") -> None:
    from notifications.testing import FakeTwilio

    with FakeTwilio() as fake:
        address_queue.put(fake.config(timeout_seconds=10))
        stop.wait()
        result_queue.put([(m.to, m.body) for m in fake.messages])


def _populate(count: int) -> None:
    """``count`` consenting patients, each with one site whose photo is due on DUE (bulk inserts)."""
    from sqlalchemy import insert

    from followup.db import db, utcnow
    from followup.models import Clinic, FollowUpPlan, Patient, PlanItem, Site

    now = utcnow()
    clinic = Clinic(name="Bench Clinic", phone="+441234567890", timezone="Europe/London")
    db.session.add(clinic)
    db.session.flush()
    patients = [dict(id=i + 1, clinic_id=clinic.id, name=f"Patient {i}", phone=f"+4477{i:08d}",
                     timezone="Europe/London", sms_consent=True, created_at=now) for i in range(count)]
    sites = [dict(id=i + 1, patient_id=i + 1, body_site="left forearm", diagnosis="bcc",
                  excision_date=date(2027, 1, 4), created_at=now) for i in range(count)]
    plans = [dict(id=i + 1, site_id=i + 1, protocol="bcc", source="bench", created_at=now) for i in range(count)]
    items = [dict(id=i + 1, plan_id=i + 1, kind="photo", due_date=DUE, status="pending") for i in range(count)]
    for model, rows in ((Patient, patients), (Site, sites), (FollowUpPlan, plans), (PlanItem, items)):
        for start in range(0, len(rows), 2000):
            db.session.execute(insert(model), rows[start:start + 2000])
    db.session.commit()
    if db.session.get_bind().dialect.name == "postgresql":
        for table in ("patient", "site", "follow_up_plan", "plan_item"):
            db.session.execute(db.text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
        db.session.commit()


def run(*, patients: int = 10_000, database_url: Optional[str] = None, concurrency: int = 8) -> dict[str, Any]:
    from app import create_app
    from followup.db import db
    from followup.models import OutboundMessage

    address_queue, result_queue, stop = mp.Queue(), mp.Queue(), mp.Event()
    server = mp.Process(target=_serve_fake_twilio, args=(address_queue, stop, result_queue), daemon=True)
    server.start()
    workdir = tempfile.TemporaryDirectory(prefix="reminders-bench-")
    try:
        twilio_config = address_queue.get(timeout=60)
        config = {
            "DATABASE_URL": database_url or f"sqlite:///{Path(workdir.name) / 'bench.sqlite'}",
            "MEDIA_ROOT": str(Path(workdir.name) / "media"), "SECRET_KEY": "bench", "SCHEDULER_ENABLED": False,
            "JOB_BACKEND": "deferred", "PUBLIC_BASE_URL": "https://scarwatch.example", "LOG_LEVEL": "WARNING",
            "SMS_SEND_CONCURRENCY": concurrency, **twilio_config,
        }
        app = create_app(config)
        with app.app_context():
            from followup.outreach.sweep import dispatch

            db.drop_all()
            db.create_all()
            _populate(patients)
            started = time.perf_counter()
            summary = dispatch(SWEEP_AT)
            seconds = time.perf_counter() - started
            outbox = Counter(db.session.execute(db.select(OutboundMessage.status)).scalars())
            db.session.rollback()  # end the read before dropping the tables
            if database_url:
                db.drop_all()
            db.session.remove()
            db.engine.dispose()
        stop.set()
        delivered = result_queue.get(timeout=120)
        server.join(30)
    finally:
        stop.set()
        if server.is_alive():
            server.terminate()
        workdir.cleanup()
    per_recipient = Counter(to for to, _ in delivered)
    return {
        "benchmark": "reminders_sweep",
        "patients_due": patients,
        "seconds": round(seconds, 2),
        "sent": summary["sent"],
        "failed": summary["failed"],
        "messages_at_twilio": len(delivered),
        "duplicates": len(delivered) - len(set(delivered)),
        "patients_texted_twice": sum(1 for n in per_recipient.values() if n > 1),
        "outbox": dict(outbox),
        "per_second": round(len(delivered) / seconds, 1) if seconds else None,
        "target_seconds": 60,
        "backend": (database_url or "sqlite").split(":")[0],
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--database-url", default=None,
                        help="an empty database to use (its tables are dropped); default a temporary SQLite file")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="parallel requests to Twilio (SMS_SEND_CONCURRENCY)")
    args = parser.parse_args(argv)
    result = run(patients=args.patients, database_url=args.database_url, concurrency=args.concurrency)
    print(json.dumps(result))
    ok = result["duplicates"] == 0 and result["patients_texted_twice"] == 0 and result["sent"] == args.patients
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
