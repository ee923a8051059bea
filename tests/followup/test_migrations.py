"""The migrations build exactly the models' schema, from empty, on SQLite and PostgreSQL, and go down again."""
import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

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


def test_open_alert_migration_closes_duplicates_then_enforces_one_per_site_photo_and_kind(migrations_app):
    """Duplicate open alerts made every reminder sweep raise: 0004 keeps the most advanced (claimed), else the
    oldest, closes the others with a note (and an audit event) and repoints their reminders, then adds the
    unique indexes; the reminder, photo and day-ledger columns of 0004 come and go with it."""
    upgrade(revision="0003_site_outline")
    now = "2026-12-01 10:00:00+00:00"
    for sql in (
        "INSERT INTO clinic (id, name, timezone, protocol_overrides, operating_point, created_at) "
        f"VALUES (1, 'North', 'Europe/London', '{{}}', 'sensitivity_first', '{now}')",
        "INSERT INTO \"user\" (id, clinic_id, email, name, password_hash, role, active, created_at) "
        f"VALUES (1, 1, 'derm@north.test', '', 'x', 'dermatologist', true, '{now}')",
        "INSERT INTO patient (id, clinic_id, name, phone, timezone, sms_consent, created_at) "
        f"VALUES (1, 1, 'Grace', '+447700900456', 'Europe/London', true, '{now}')",
        "INSERT INTO site (id, patient_id, body_site, diagnosis, excision_date, created_at) "
        f"VALUES (1, 1, 'left shoulder', 'bcc', '2026-11-01', '{now}')",
        "INSERT INTO photo (id, site_id, kind, sha256, storage_key, content_type, size_bytes, width, height, "
        "received_at, status, status_changed_at, attempts) "
        f"VALUES (1, 1, 'followup', 'abc', 'abc.jpg', 'image/jpeg', 10, 64, 48, '{now}', 'done', '{now}', 0)",
        "INSERT INTO follow_up_plan (id, site_id, protocol, source, created_at) VALUES (1, 1, 'bcc', 'test', "
        f"'{now}')",
        "INSERT INTO plan_item (id, plan_id, kind, due_date, status) VALUES (1, 1, 'photo', '2026-11-20', 'missed')",
    ):
        db.session.execute(text(sql))
    alerts = [  # id, photo, kind, status, priority, created
        (1, None, "no_photo", "open", 3, "2026-12-01 10:00:00+00:00"),
        (2, None, "no_photo", "open", 2, "2026-12-02 10:00:00+00:00"),
        (3, 1, "change", "open", 2, "2026-12-01 10:00:00+00:00"),
        (4, 1, "change", "claimed", 3, "2026-12-03 10:00:00+00:00"),
        (5, 1, "change", "resolved", 1, "2026-11-30 10:00:00+00:00"),
        (6, 1, "unreadable", "open", 2, "2026-12-01 10:00:00+00:00"),
    ]
    for alert_id, photo_id, kind, status, priority, created in alerts:
        db.session.execute(text(
            "INSERT INTO alert (id, clinic_id, site_id, photo_id, kind, priority, recurrence_score, reasons, status, "
            "claimed_by_id, created_at) VALUES (:id, 1, 1, :photo, :kind, :priority, 0.5, '[]', :status, :claimer, "
            ":created)"), dict(id=alert_id, photo=photo_id, kind=kind, priority=priority, status=status,
                               claimer=1 if status == "claimed" else None, created=created))
    db.session.execute(text(
        "INSERT INTO reminder (id, plan_item_id, site_id, patient_id, kind, due_at, status, alert_id, created_at) "
        f"VALUES (1, 1, 1, 1, 'photo_escalation', '{now}', 'escalated', 2, '{now}')"))
    db.session.commit()
    upgrade()
    rows = {r.id: r for r in db.session.execute(text("SELECT id, status, priority, note FROM alert")).all()}
    assert {i for i, r in rows.items() if r.status != "resolved"} == {1, 4, 6}, "the oldest; the claimed one"
    assert "duplicate of alert 1" in rows[2].note and "duplicate of alert 4" in rows[3].note
    assert rows[1].priority == 2 and rows[4].priority == 2, "the most urgent of the group stays"
    assert db.session.execute(text("SELECT alert_id FROM reminder")).scalar_one() == 1
    audited = db.session.execute(text("SELECT record_id FROM audit_event WHERE action = 'resolve_alert' "
                                      "ORDER BY record_id")).scalars().all()
    assert audited == [2, 3]
    for photo_id, kind in ((None, "no_photo"), (1, "change")):
        with pytest.raises(IntegrityError):
            db.session.execute(text(
                "INSERT INTO alert (clinic_id, site_id, photo_id, kind, priority, recurrence_score, reasons, status, "
                f"created_at) VALUES (1, 1, :photo, :kind, 1, 0.0, '[]', 'open', '{now}')"),
                dict(photo=photo_id, kind=kind))
        db.session.rollback()
    assert db.session.execute(text("SELECT cycle FROM reminder")).scalar_one() == 0
    assert "next_attempt_at" in {c["name"] for c in inspect(db.engine).get_columns("photo")}
    db.session.execute(text(  # a day taken by a retake request, which the older schema cannot hold
        "INSERT INTO outbound_message (id, clinic_id, patient_id, idempotency_key, \"to\", body, purpose, status, "
        f"attempts, created_at, updated_at) VALUES (1, 1, 1, 'retake:x', '+447700900456', 'b', 'retake', 'sent', 1, "
        f"'{now}', '{now}')"))
    db.session.execute(text("INSERT INTO patient_sms_day (patient_id, day, outbound_message_id, created_at) "
                            f"VALUES (1, '2026-12-02', 1, '{now}')"))
    db.session.commit()
    db.session.remove()
    downgrade(revision="0003_site_outline")
    assert "cycle" not in {c["name"] for c in inspect(db.engine).get_columns("reminder")}
    assert "next_attempt_at" not in {c["name"] for c in inspect(db.engine).get_columns("photo")}
    assert db.session.execute(text("SELECT count(*) FROM patient_sms_day")).scalar_one() == 0
    assert db.session.execute(text("SELECT count(*) FROM alert WHERE status <> 'resolved'")).scalar_one() == 3


def test_texts_stored_with_a_plain_upload_link_are_sealed(migrations_app):
    from followup.records.links import hide_links, link_url, open_links

    upgrade(revision="0010_dicom_push")
    now = "2026-12-01 10:00:00+00:00"
    db.session.execute(text(
        "INSERT INTO clinic (id, name, timezone, protocol_overrides, operating_point, created_at) "
        f"VALUES (1, 'North', 'Europe/London', '{{}}', 'sensitivity_first', '{now}')"))
    for row_id, status, body in ((1, "delivered", "Your photo: https://old.example.org/u/AbC-12_x9 thanks"),
                                 (2, "pending", "Retake: http://127.0.0.1:5000/u/ZZtop_-1 please"),
                                 (3, "sent", "No link here.")):
        db.session.execute(text(
            "INSERT INTO outbound_message (id, clinic_id, idempotency_key, \"to\", body, purpose, status, attempts, "
            f"created_at, updated_at) VALUES ({row_id}, 1, 'k{row_id}', '+447700900456', '{body}', 'reminder', "
            f"'{status}', 0, '{now}', '{now}')"))
    db.session.commit()
    upgrade()
    bodies = dict(db.session.execute(text("SELECT id, body FROM outbound_message")).all())
    assert "AbC-12_x9" not in bodies[1] and "ZZtop_-1" not in bodies[2]
    assert open_links(bodies[1]) == f"Your photo: {link_url('AbC-12_x9')} thanks"
    assert open_links(bodies[2]) == f"Retake: {link_url('ZZtop_-1')} please"
    assert hide_links(bodies[2]) == f"Retake: {link_url('…')} please"
    assert bodies[3] == "No link here."
