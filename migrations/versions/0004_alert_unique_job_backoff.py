"""one unresolved alert per site, kind and photo (duplicates closed first); photo job backoff; re-dated
reminders planned again; the one-text-a-day ledger also owned by retake requests

Revision ID: 0004_alert_unique_job_backoff
Revises: 0003_site_outline
Create Date: 2026-12-12 09:00:00.000000

"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

import followup.db

# revision identifiers, used by Alembic.
revision = "0004_alert_unique_job_backoff"
down_revision = "0003_site_outline"
branch_labels = None
depends_on = None

# As in followup.models.alerts (repeated: a migration must not change when the models do).
OPEN_PER_PHOTO = "status <> 'resolved' AND photo_id IS NOT NULL"
OPEN_PER_SITE = "status <> 'resolved' AND photo_id IS NULL"


def upgrade():
    close_duplicate_alerts(op.get_bind())
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.create_index('uq_alert_open_photo', ['site_id', 'kind', 'photo_id'], unique=True,
                              sqlite_where=sa.text(OPEN_PER_PHOTO), postgresql_where=sa.text(OPEN_PER_PHOTO))
        batch_op.create_index('uq_alert_open_site', ['site_id', 'kind'], unique=True,
                              sqlite_where=sa.text(OPEN_PER_SITE), postgresql_where=sa.text(OPEN_PER_SITE))

    with op.batch_alter_table('photo', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_attempt_at', followup.db.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cycle', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('patient_sms_day', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outbound_message_id', sa.Integer(), nullable=True))
        batch_op.alter_column('reminder_id', existing_type=sa.Integer(), nullable=True)
        batch_op.create_index(batch_op.f('ix_patient_sms_day_outbound_message_id'), ['outbound_message_id'],
                              unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_patient_sms_day_outbound_message_id_outbound_message'),
                                    'outbound_message', ['outbound_message_id'], ['id'])


def downgrade():
    # A day taken by a retake request has no reminder to name: the older schema cannot hold it.
    op.execute("DELETE FROM patient_sms_day WHERE reminder_id IS NULL")
    with op.batch_alter_table('patient_sms_day', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_patient_sms_day_outbound_message_id_outbound_message'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_patient_sms_day_outbound_message_id'))
        batch_op.alter_column('reminder_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('outbound_message_id')

    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.drop_column('cycle')

    with op.batch_alter_table('photo', schema=None) as batch_op:
        batch_op.drop_column('next_attempt_at')

    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index('uq_alert_open_site')
        batch_op.drop_index('uq_alert_open_photo')


def close_duplicate_alerts(connection) -> int:
    """Before the unique indexes: of several unresolved alerts for one site, kind and photo, keep the most
    advanced (claimed before open), then the oldest; it takes the group's most urgent priority and highest
    score, the reminders that pointed at the others, and the others are resolved with a note saying which
    alert they duplicated (and an audit event each). Answers how many were closed."""
    alert = sa.table(
        "alert", sa.column("id", sa.Integer), sa.column("site_id", sa.Integer), sa.column("photo_id", sa.Integer),
        sa.column("kind", sa.String), sa.column("status", sa.String), sa.column("priority", sa.Integer),
        sa.column("recurrence_score", sa.Float), sa.column("note", sa.Text),
        sa.column("created_at", followup.db.UTCDateTime(timezone=True)),
        sa.column("resolved_at", followup.db.UTCDateTime(timezone=True)),
    )
    reminder = sa.table("reminder", sa.column("alert_id", sa.Integer))
    audit = sa.table(
        "audit_event", sa.column("actor", sa.String), sa.column("action", sa.String),
        sa.column("record_type", sa.String), sa.column("record_id", sa.Integer), sa.column("detail", sa.JSON),
        sa.column("at", followup.db.UTCDateTime(timezone=True)),
    )
    rows = connection.execute(
        sa.select(alert.c.id, alert.c.site_id, alert.c.photo_id, alert.c.kind, alert.c.status, alert.c.priority,
                  alert.c.recurrence_score, alert.c.note, alert.c.created_at)
        .where(alert.c.status != "resolved")
    ).all()
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault((row.site_id, row.kind, row.photo_id), []).append(row)
    now = datetime.now(timezone.utc)
    closed = 0
    for group in groups.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda r: (r.status != "claimed", r.created_at, r.id))
        keep, others = group[0], group[1:]
        connection.execute(
            alert.update().where(alert.c.id == keep.id)
            .values(priority=min(r.priority for r in group),
                    recurrence_score=max(r.recurrence_score or 0.0 for r in group)))
        for dup in others:
            note = f"Closed as a duplicate of alert {keep.id} (migration {revision})."
            connection.execute(
                alert.update().where(alert.c.id == dup.id)
                .values(status="resolved", resolved_at=now, note=f"{dup.note}\n{note}" if dup.note else note))
            connection.execute(reminder.update().where(reminder.c.alert_id == dup.id).values(alert_id=keep.id))
            connection.execute(audit.insert().values(
                actor="migration", action="resolve_alert", record_type="alert", record_id=dup.id,
                detail={"duplicate_of": keep.id, "migration": revision}, at=now))
            closed += 1
    return closed
