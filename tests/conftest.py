"""Shared fixtures (flaskr style): ``app``, ``client``, ``runner`` and small helpers.

Every database test runs on SQLite and, when ``TEST_DATABASE_URL`` names a PostgreSQL database, on
PostgreSQL too. Each test gets a fresh schema.
"""
from __future__ import annotations

import contextvars
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from app import create_app
from followup.db import db
from followup.models import Clinic
from followup.records.accounts import create_user

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCARWATCH_SHARED", REPO.parent / "shared"))
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
PASSWORD = "correct-horse-battery"


def base_config(tmp_path: Path, backend: str = "sqlite") -> dict:
    return {
        "TESTING": True,
        "DATABASE_URL": PG_URL if backend == "postgresql" else f"sqlite:///{tmp_path / 'test.sqlite'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "SECRET_KEY": "test-secret",
        "JOB_BACKEND": "sync",
        "SCHEDULER_ENABLED": False,
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_ENABLED": False,
        "PUBLIC_BASE_URL": "https://scarwatch.test",
        "PASSWORD_HASH_METHOD": "scrypt:1024:8:1",  # fast in tests; production keeps werkzeug's cost
    }


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def app_config(tmp_path, backend) -> dict:
    """Override keys in a test with ``@pytest.mark.parametrize`` or by requesting and editing this dict."""
    return base_config(tmp_path, backend)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """An empty schema built once; each test copies the file (much faster than create_all)."""
    folder = tmp_path_factory.mktemp("template")
    app = create_app(base_config(folder))
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    return folder / "test.sqlite"


@pytest.fixture(scope="session")
def pg_schema(tmp_path_factory) -> bool:
    """The PostgreSQL schema, created once per session; tests empty it afterwards."""
    if not PG_URL:
        return False
    app = create_app(base_config(tmp_path_factory.mktemp("pg"), "postgresql"))
    with app.app_context():
        drop_pg_tables()
        db.create_all()
        db.engine.dispose()
    return True


def drop_pg_tables() -> None:
    """Drop the models' tables (and Alembic's) from PostgreSQL, whatever schema an earlier run left there:
    ``drop_all`` assumes today's (it drops the site → photo foreign key by name, which older schemas lack)."""
    tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
    with db.engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {tables}, alembic_version CASCADE")


def _truncate_all() -> None:
    tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
    db.session.execute(db.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.session.commit()


@pytest.fixture
def app(app_config, backend, request, tmp_path):
    if backend == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "test.sqlite")
    else:
        request.getfixturevalue("pg_schema")
    app = create_app(app_config)
    with app.app_context():
        yield app
        db.session.remove()
        if backend == "postgresql":
            _truncate_all()
        db.engine.dispose()


class IsolatedClient(FlaskClient):
    """Each request runs in a fresh context, as in production, not inside the test's app context.

    (Flask would otherwise reuse the test's app context, so ``g`` — CSRF tokens, cached users — would leak
    from one request into the next.) The body is read in that context too, as a server would: a streamed
    response keeps its request's context until its last chunk.
    """

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture
def client(app):
    app.test_client_class = IsolatedClient
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class World:
    """Two clinics, each with a dermatologist and an admin, for authorisation tests."""

    def __init__(self, app):
        self.app = app
        self.clinic = Clinic(name="North Clinic", phone="+441234567890")
        self.other_clinic = Clinic(name="South Clinic")
        db.session.add_all([self.clinic, self.other_clinic])
        db.session.flush()
        self.derm = create_user(self.clinic, email="derm@north.test", password=PASSWORD, role="dermatologist")
        self.admin = create_user(self.clinic, email="admin@north.test", password=PASSWORD, role="admin")
        self.other_derm = create_user(self.other_clinic, email="derm@south.test", password=PASSWORD,
                                      role="dermatologist")
        db.session.commit()

    def token(self, client, email: str) -> str:
        response = client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["token"]

    def headers(self, client, email: str) -> dict:
        return {"Authorization": f"Bearer {self.token(client, email)}"}


@pytest.fixture
def world(app):
    return World(app)


def jpeg_bytes(width: int = 320, height: int = 240, *, seed: int = 0, exif=None) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((height, width, 3)) * 60 + 150).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90, **({"exif": exif} if exif is not None else {}))
    return out.getvalue()


def png_bytes(width: int = 64, height: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 150, 130)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def patient_id(world) -> int:
    from followup.records.patients import create_patient

    patient = create_patient(world.clinic, name="Grace Hopper", phone="+447700900456", sms_consent=True)
    db.session.commit()
    return patient.id


@pytest.fixture
def site_id(world, patient_id) -> int:
    from datetime import date, timedelta

    from followup.models import Patient
    from followup.records.patients import create_site

    site = create_site(db.session.get(Patient, patient_id), body_site="left shoulder", diagnosis="bcc",
                       excision_date=date.today() - timedelta(days=30), dermatologist=world.derm)
    db.session.commit()
    return site.id


@pytest.fixture(scope="session")
def demo_config(tmp_path_factory) -> dict:
    """The whole demo (``seed-demo``), seeded once per session into its own folder: its real analyses take a
    few minutes, so every test that reads it shares it (tests/followup/test_demo.py, the browser's demo tour).
    Tests read it; what they write (audit rows of page views) changes none of the demo's facts."""
    from followup.demo import seed_demo

    folder = tmp_path_factory.mktemp("demo")
    config = base_config(folder)
    app = create_app(config)
    with app.app_context():
        db.create_all()
        seed_demo(progress=False)
        db.session.remove()
        db.engine.dispose()
    return config
