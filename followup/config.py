"""Configuration from environment variables only; every setting has a safe default.

Each variable is documented in the README's configuration table.
"""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Mapping


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _ids(value: str) -> frozenset[int]:
    """``"3, 7"`` → {3, 7}; anything else than comma-separated integers stops the start-up."""
    return frozenset(int(part) for part in value.split(",") if part.strip())


# name -> (parser, default); a default of None means "derived below".
SETTINGS: dict[str, tuple[Any, Any]] = {
    "DATABASE_URL": (str, None),
    "MEDIA_ROOT": (str, None),
    "SECRET_KEY": (str, None),
    "PUBLIC_BASE_URL": (str, "http://127.0.0.1:5000"),
    "TWILIO_ACCOUNT_SID": (str, ""),
    "TWILIO_AUTH_TOKEN": (str, ""),
    "TWILIO_MESSAGING_SERVICE_SID": (str, ""),
    "TWILIO_FROM_NUMBER": (str, ""),
    "TWILIO_API_BASE_URL": (str, ""),
    "TWILIO_TIMEOUT_SECONDS": (float, 10.0),
    "STORAGE_BACKEND": (str, "local"),  # local | s3
    "DICOMWEB_URL": (str, ""),  # the archive's DICOMweb base URL; empty: no push
    "S3_BUCKET": (str, ""),
    "S3_ENDPOINT_URL": (str, ""),
    "S3_PREFIX": (str, "media/"),
    "JOB_BACKEND": (str, "inprocess"),  # inprocess | celery | sync | deferred
    "CELERY_BROKER_URL": (str, "redis://127.0.0.1:6379/0"),
    "CELERY_VISIBILITY_TIMEOUT": (int, 3600),  # s an unacknowledged task waits before Redis hands it out again
    "CELERY_WORKER_MAX_MEMORY_KB": (int, 1_500_000),  # a worker child past this resident size is replaced
    "PHOTO_RESEND_SECONDS": (float, 30.0),  # the scheduler sends queued or stale photos again this often
    "PHOTO_STALE_SECONDS": (float, 120.0),  # a processing photo without a heartbeat this long: its worker died
    "PHOTO_RETRY_SECONDS": (float, 120.0),  # a failed photo job waits this long, then 4 times longer
    "SCHEDULER_ENABLED": (_bool, True),
    "QUIET_HOURS": (str, "20:00-09:00"),  # no patient SMS then, in the patient's timezone
    "REMINDER_LOCAL_TIME": (str, "10:00"),  # when reminders go out, in the patient's timezone
    "DIGEST_LOCAL_TIME": (str, "09:00"),  # dermatologists' daily alert digest, in the clinic's timezone
    "SMS_SEND_CONCURRENCY": (int, 8),  # parallel requests to Twilio during a sweep
    "PROXY_FIX_HOPS": (int, 0),  # reverse proxies in front of the app whose X-Forwarded-* headers to trust
    "RATELIMIT_STORAGE_URI": (str, "memory://"),
    "LOGIN_RATE_LIMIT": (str, "10 per minute"),
    "LINK_UPLOAD_RATE_LIMIT": (str, "10 per hour"),  # patient uploads through one link
    "ADDRESS_UPLOAD_RATE_LIMIT": (str, "60 per hour"),  # patient uploads from one address (many share one)
    "MAX_UPLOAD_MB": (float, 25.0),
    "MAX_IMAGE_PIXELS": (int, 50_000_000),
    "UPLOAD_LINK_DAYS": (int, 14),
    "UPLOAD_LINKS_SEVERAL_CLINICS": (_ids, frozenset()),  # clinic ids whose sites keep older live links
    "API_TOKEN_HOURS": (int, 12),
    "SESSION_IDLE_MINUTES": (int, 30),
    "CLAIM_STALE_HOURS": (float, 24.0),  # a claimed alert goes back to the triage queue after this long
    "ORIGINALS_KEY": (str, ""),  # a Fernet key: keep encrypted originals; empty = keep none
    "RECURRENCE_CHECKPOINT": (str, ""),
    "LOG_LEVEL": (str, "INFO"),
}


def from_environment(instance_path: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from ``environ`` (default ``os.environ``), filling safe defaults."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for name, (parse, default) in SETTINGS.items():
        raw = environ.get(name)
        config[name] = parse(raw) if raw not in (None, "") else default
    instance = Path(instance_path)
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = f"sqlite:///{instance / 'scarwatch.sqlite'}"
    if not config["MEDIA_ROOT"]:
        config["MEDIA_ROOT"] = str(instance / "media")
    if not config["SECRET_KEY"]:
        config["SECRET_KEY"] = _instance_secret(instance)
    return config


def _instance_secret(instance: Path) -> str:
    """A random key generated once and kept under instance/, so sessions survive restarts.

    Several processes may start at once on a fresh instance/ (web, scheduler, workers): the key is
    written whole to a private temporary file and linked into place, which fails if another process
    got there first, so every process reads one complete key and none crashes.
    """
    path = instance / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    instance.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=instance, prefix=".secret_key.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process linked its key first: that one is used by all
    finally:
        os.unlink(temporary)
    return path.read_text().strip()


def sqlalchemy_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs (Heroku-style ``postgres://`` too)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
