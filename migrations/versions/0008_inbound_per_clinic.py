"""inbound per clinic: a text may go to several clinics' inboxes (unique per MessageSid and clinic)

Revision ID: 0008_inbound_per_clinic
Revises: 0007_overdue_indexes
Create Date: 2026-12-20 11:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008_inbound_per_clinic"
down_revision = "0007_overdue_indexes"
branch_labels = None
depends_on = None

_UNROUTED = sa.text("clinic_id IS NULL")


def upgrade():
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.drop_constraint('uq_inbound_message_twilio_sid', type_='unique')
        batch_op.create_unique_constraint('uq_inbound_message_twilio_sid_clinic_id', ['twilio_sid', 'clinic_id'])
    op.create_index('uq_inbound_message_twilio_sid_unrouted', 'inbound_message', ['twilio_sid'], unique=True,
                    sqlite_where=_UNROUTED, postgresql_where=_UNROUTED)


def downgrade():
    # One row per MessageSid again: the copies in further clinics' inboxes go.
    op.execute("DELETE FROM inbound_message WHERE id NOT IN "
               "(SELECT MIN(id) FROM inbound_message GROUP BY twilio_sid)")
    op.drop_index('uq_inbound_message_twilio_sid_unrouted', table_name='inbound_message')
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.drop_constraint('uq_inbound_message_twilio_sid_clinic_id', type_='unique')
        batch_op.create_unique_constraint('uq_inbound_message_twilio_sid', ['twilio_sid'])
