"""The migrations build exactly the models' schema, from empty, on SQLite and PostgreSQL, and go down again."""
import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from app import create_app
from followup.db import db
from tests.conftest import base_config, drop_pg_tables

MIGRATIONS_PG = os.environ.get("TEST_MIGRATIONS_DATABASE_URL", "")
TARGETS = ["sqlite"] + (["postgresql"] if MIGRATIONS_PG else [])


@pytest.fixture(params=TARGETS)
def migrations_app(request, tmp_path):
    config = base_config(tmp_path)
    if request.param == "postgresql":
        config["DATABASE_URL"] = MIGRATIONS_PG
    app = create_app(config)
    with app.app_context():
        if request.param == "postgresql":
            drop_pg_tables()
        yield app
        db.session.remove()
        db.engine.dispose()


def _differences():
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "render_as_batch": True})
        return compare_metadata(context, db.metadata)


def test_upgrade_matches_models_then_downgrade_and_upgrade_again(migrations_app):
    upgrade()
    assert _differences() == []
    downgrade(revision="base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    upgrade()
    assert _differences() == []
    assert "photo" in inspect(db.engine).get_table_names()


def test_site_outline_migration_keeps_the_rows_and_goes_down_again(migrations_app):
    upgrade(revision="0002_reminders")
    now = "2026-12-01 10:00:00+00:00"
    for sql in (
        "INSERT INTO clinic (id, name, timezone, protocol_overrides, operating_point, created_at) "
        f"VALUES (1, 'North', 'Europe/London', '{{}}', 'sensitivity_first', '{now}')",
        "INSERT INTO patient (id, clinic_id, name, phone, timezone, sms_consent, created_at) "
        f"VALUES (1, 1, 'Grace', '+447700900456', 'Europe/London', true, '{now}')",
        "INSERT INTO site (id, patient_id, body_site, diagnosis, excision_date, created_at) "
        f"VALUES (1, 1, 'left shoulder', 'bcc', '2026-11-01', '{now}')",
        "INSERT INTO photo (id, site_id, kind, sha256, storage_key, content_type, size_bytes, width, height, "
        "received_at, status, status_changed_at, attempts) "
        f"VALUES (1, 1, 'baseline', 'abc', 'abc.jpg', 'image/jpeg', 10, 64, 48, '{now}', 'done', '{now}', 0)",
    ):
        db.session.execute(text(sql))
    db.session.commit()
    upgrade()
    columns = {c["name"] for c in inspect(db.engine).get_columns("site")}
    assert {"outline_polygon", "outline_source", "outline_photo_id", "outline_note"} <= columns
    assert {"modality", "site_flag"} <= {c["name"] for c in inspect(db.engine).get_columns("analysis")}
    assert any(fk["referred_table"] == "photo" for fk in inspect(db.engine).get_foreign_keys("site"))
    db.session.execute(text("UPDATE site SET outline_polygon = '[[1, 1], [9, 1], [9, 9]]', outline_source = 'staff', "
                            "outline_photo_id = 1"))
    db.session.commit()
    assert db.session.execute(text("SELECT outline_source, outline_photo_id FROM site")).one() == ("staff", 1)
    db.session.remove()
    downgrade(revision="0002_reminders")
    assert not {"outline_polygon", "outline_photo_id"} & {c["name"] for c in inspect(db.engine).get_columns("site")}
    assert "modality" not in {c["name"] for c in inspect(db.engine).get_columns("photo")}
    assert db.session.execute(text("SELECT body_site FROM site")).scalar_one() == "left shoulder"


def test_audit_subjects_migration_names_the_patient_of_earlier_events(migrations_app):
    upgrade(revision="0003_site_outline")
    now = "2026-12-01 10:00:00+00:00"
    for sql in (
        "INSERT INTO clinic (id, name, timezone, protocol_overrides, operating_point, created_at) "
        f"VALUES (1, 'North', 'Europe/London', '{{}}', 'sensitivity_first', '{now}')",
        "INSERT INTO patient (id, clinic_id, name, phone, timezone, sms_consent, created_at) "
        f"VALUES (7, 1, 'Grace', '+447700900456', 'Europe/London', true, '{now}')",
        "INSERT INTO site (id, patient_id, body_site, diagnosis, excision_date, created_at) "
        f"VALUES (3, 7, 'left shoulder', 'bcc', '2026-11-01', '{now}')",
        "INSERT INTO photo (id, site_id, kind, sha256, storage_key, content_type, size_bytes, width, height, "
        "received_at, status, status_changed_at, attempts) "
        f"VALUES (5, 3, 'baseline', 'abc', 'abc.jpg', 'image/jpeg', 10, 64, 48, '{now}', 'done', '{now}', 0)",
        "INSERT INTO alert (id, clinic_id, site_id, photo_id, kind, priority, recurrence_score, reasons, status, "
        f"created_at) VALUES (9, 1, 3, 5, 'change', 1, 0.9, '[]', 'open', '{now}')",
    ):
        db.session.execute(text(sql))
    for event_id, record_type, record_id in ((1, "patient", 7), (2, "site", 3), (3, "photo", 5), (4, "alert", 9),
                                             (5, "clinic", 1), (6, "photo", 404)):
        db.session.execute(text(
            "INSERT INTO audit_event (id, actor, action, record_type, record_id, detail, at) "
            f"VALUES ({event_id}, 'system', 'read', '{record_type}', {record_id}, '{{}}', '{now}')"))
    db.session.commit()
    upgrade()
    rows = db.session.execute(text("SELECT audit_id, patient_id FROM audit_subject ORDER BY audit_id")).all()
    assert [tuple(r) for r in rows] == [(1, 7), (2, 7), (3, 7), (4, 7)]
    db.session.remove()
    downgrade(revision="0003_site_outline")
    assert "audit_subject" not in inspect(db.engine).get_table_names()
