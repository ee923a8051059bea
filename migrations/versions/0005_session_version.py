"""session version: a per-user number kept in the session cookie, raised to end every web session of the user

Revision ID: 0005_session_version
Revises: 0004_alert_unique_job_backoff
Create Date: 2026-12-12 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005_session_version"
down_revision = "0004_alert_unique_job_backoff"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='1', nullable=False))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('session_version')
