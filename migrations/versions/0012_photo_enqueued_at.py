"""photo enqueued_at: when a photo was last handed to the job queue, so lost Celery messages are sent again

Revision ID: 0012_photo_enqueued_at
Revises: 0011_seal_stored_links
Create Date: 2026-12-06 00:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

import followup.db

# revision identifiers, used by Alembic.
revision = '0012_photo_enqueued_at'
down_revision = '0011_seal_stored_links'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('photo', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enqueued_at', followup.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_photo_enqueued_at'), ['enqueued_at'], unique=False)


def downgrade():
    with op.batch_alter_table('photo', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_photo_enqueued_at'))
        batch_op.drop_column('enqueued_at')
