"""Command-line interface: ``flask --app app <command>`` (see the README and CONTRACT)."""
from __future__ import annotations

import json

import click
from flask import Flask, current_app
from sqlalchemy import select

from followup.db import db


@click.command("create-user")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--role", type=click.Choice(["admin", "dermatologist"]), required=True)
@click.option("--name", default="")
@click.option("--clinic", "clinic_name", default=None, help="Clinic name (default: the only clinic, else a new one).")
def create_user_command(email: str, password: str, role: str, name: str, clinic_name: str | None) -> None:
    """Create a staff account."""
    from followup.models import Clinic
    from followup.records.accounts import AccountError, create_user

    if clinic_name:
        clinic = db.session.execute(select(Clinic).where(Clinic.name == clinic_name)).scalar_one_or_none()
        clinic = clinic or Clinic(name=clinic_name)
    else:
        clinics = list(db.session.execute(select(Clinic).limit(2)).scalars())
        if len(clinics) > 1:
            raise click.UsageError("there are several clinics: name one with --clinic")
        clinic = clinics[0] if clinics else Clinic(name="Clinic")
    db.session.add(clinic)
    try:
        user = create_user(clinic, email=email, password=password, role=role, name=name)
    except AccountError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc))
    db.session.commit()
    click.echo(f"created {user.role} {user.email} (id {user.id}) in clinic {clinic.name!r}")


@click.command("seed-demo")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already has a clinic.")
@click.option("--queue-only", is_flag=True,
              help="Leave the photos queued for the server's worker instead of analysing them now "
                   "(the history's alerts then stay open and undated).")
@click.option("--seed", default=7, show_default=True, help="Random seed of the generated follow-ups.")
def seed_demo_command(if_empty: bool, queue_only: bool, seed: int) -> None:
    """Load the demo clinic: a year of patients, photos, texts and decided alerts, analysed here."""
    import time

    from followup.demo import database_is_empty, seed_demo

    if if_empty and not database_is_empty():
        click.echo("database already has data; demo not seeded")
        return
    started = time.monotonic()
    summary = seed_demo(seed=seed, analyse_now=not queue_only)
    click.echo(f"demo seeded in {time.monotonic() - started:.0f} s: {json.dumps(summary)}")


@click.command("worker")
def worker_command() -> None:
    """Run the photo-analysis worker in the foreground (production, JOB_BACKEND=inprocess)."""
    from followup.analysis.jobs import InProcessWorker

    worker = InProcessWorker(current_app._get_current_object())
    click.echo("photo worker running; Ctrl-C stops it")
    worker.run()


@click.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, envvar="PORT", type=int)
@click.option("--threads", default=8, show_default=True, help="Request threads of the one gunicorn worker.")
def serve_command(host: str, port: int, threads: int) -> None:
    """Serve pages and API through gunicorn (one worker, threads) with the photo worker and the scheduler
    inside that worker process (``make run``)."""
    from followup.server import Server

    Server(current_app._get_current_object(), host=host, port=port, threads=threads).run()


@click.group("reminders")
def reminders_group() -> None:
    """SMS reminders: the sweep that sends what is due."""


@reminders_group.command("dispatch")
@click.option("--now", "now_text", default=None, metavar="ISO-8601",
              help="Sweep as if it were this time (default: now); without an offset it is UTC.")
def reminders_dispatch_command(now_text: str | None) -> None:
    """One pass of the reminder/escalation sweep; prints a JSON summary (sent, escalated, failed, ...)."""
    from datetime import datetime, timezone

    from followup.outreach.sweep import dispatch

    now = None
    if now_text:
        try:
            now = datetime.fromisoformat(now_text.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter("use ISO-8601, e.g. 2026-05-01T10:00:00+00:00", param_hint="--now")
        now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    click.echo(json.dumps(dispatch(now), sort_keys=True))


@click.command("scheduler")
def scheduler_command() -> None:
    """Run the reminder scheduler in the foreground (production); a second one stands by and does nothing."""
    import signal
    import sys

    from followup.outreach.scheduler import ReminderScheduler, lease_holder

    app = current_app._get_current_object()
    # A process manager stops it with SIGTERM: leave through `finally`, so the lease is released at once and a
    # scheduler started next does not stand by for the lease's 2 minutes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    runner = ReminderScheduler(app, blocking=True)
    if not runner.heartbeat():
        holder = lease_holder()
        click.echo(f"another scheduler holds the lock ({holder.holder if holder else '?'}); standing by")
    else:
        click.echo("scheduler running; Ctrl-C stops it")
    try:
        runner.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        runner.shutdown()


@click.command("analyze-batch")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="RESULTS.jsonl")
@click.option("--masks", "masks", default=None, type=click.Path(file_okay=False),
              help="Folder for the change masks, created when missing (default: <RESULTS stem>_masks/).")
@click.option("--lesion-masks", "lesion_masks", default=None, type=click.Path(exists=True, file_okay=False),
              help="Baseline lesion masks, named like each baseline file.")
def analyze_batch_command(manifest: str, out: str, masks: str | None, lesion_masks: str | None) -> None:
    """Analyse baseline/follow-up pairs from MANIFEST.csv into RESULTS.jsonl (one line per pair)."""
    from followup.analysis.analyser import get_analyser
    from registration.batch import run_batch

    analyser = get_analyser()  # model loaded once for the whole batch
    summary = run_batch(manifest, out, change_masks_dir=masks, lesion_masks_dir=lesion_masks,
                        recurrence_scorer=analyser.batch_scorer())
    click.echo(json.dumps(summary))


@click.command("score-lesions")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="RESULTS.jsonl")
def score_lesions_command(manifest: str, out: str) -> None:
    """Malignancy score for each lesion image in MANIFEST.csv (columns image_id, image[, mask, history])."""
    from followup.analysis.analyser import get_analyser
    from recurrence.predict import score_manifest

    scorer = get_analyser().scorer
    if scorer is None:
        raise click.ClickException("no recurrence checkpoint: train one (python -m recurrence.train) "
                                   "or set RECURRENCE_CHECKPOINT")
    count = score_manifest(manifest, out, scorer=scorer)
    click.echo(json.dumps({"images": count, "out": out}))


@click.command("export-outcomes")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder to write into.")
@click.option("--clinic-id", type=int, default=None, help="Only this clinic's alerts.")
def export_outcomes_command(out: str, clinic_id: int | None) -> None:
    """Export resolved alerts' regions and outcomes for `python -m recurrence.train --feedback` (audited)."""
    from pathlib import Path

    from followup.triage.outcomes import export_outcomes

    click.echo(json.dumps(export_outcomes(Path(out), clinic_id=clinic_id)))


@click.command("export-dicom")
@click.option("--site", "site_id", required=True, type=int, help="The site whose photos are exported.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder to write into (created).")
def export_dicom_command(site_id: int, out: str) -> None:
    """Write each photo of a site as a DICOM file, photo-<id>.dcm, into OUT (audited)."""
    from pathlib import Path

    from followup.db import MAX_ID
    from followup.dicom.export import export_site
    from followup.models import Site

    site = db.session.get(Site, site_id) if 0 < site_id <= MAX_ID else None
    if site is None:
        raise click.BadParameter(f"no site {site_id}", param_hint="--site")
    click.echo(json.dumps(export_site(site, Path(out))))


def init_app(app: Flask) -> None:
    for command in (create_user_command, seed_demo_command, worker_command, serve_command, reminders_group,
                    scheduler_command, analyze_batch_command, score_lesions_command, export_outcomes_command,
                    export_dicom_command):
        app.cli.add_command(command)
