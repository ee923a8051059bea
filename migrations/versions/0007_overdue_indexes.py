"""overdue indexes: pending plan items in due order, a site's latest photo

Revision ID: 0007_overdue_indexes
Revises: 0006_audit_subjects
Create Date: 2026-12-20 10:00:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007_overdue_indexes"
down_revision = "0006_audit_subjects"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('plan_item', schema=None) as batch_op:
        batch_op.create_index('ix_plan_item_status_due_date', ['status', 'due_date'], unique=False)

    with op.batch_alter_table('photo', schema=None) as batch_op:
        batch_op.create_index('ix_photo_site_id_received_at', ['site_id', 'received_at'], unique=False)


def downgrade():
    with op.batch_alter_table('photo', schema=None) as batch_op:
        batch_op.drop_index('ix_photo_site_id_received_at')

    with op.batch_alter_table('plan_item', schema=None) as batch_op:
        batch_op.drop_index('ix_plan_item_status_due_date')
