"""scale in mm: each analysis's mm per pixel (from the reference sticker or the clinic), its source and reasons;
the scar length a clinic measures at enrolment

Revision ID: 0013_scale_mm
Revises: 0012_photo_enqueued_at
Create Date: 2026-12-06 04:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0013_scale_mm'
down_revision = '0012_photo_enqueued_at'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('analysis', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scale_mm_per_px', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('reference_mm_per_px', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('scale_source', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('scale_reasons', sa.JSON(), nullable=True))
    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scar_length_mm', sa.Float(), nullable=True))


def downgrade():
    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.drop_column('scar_length_mm')
    with op.batch_alter_table('analysis', schema=None) as batch_op:
        batch_op.drop_column('scale_reasons')
        batch_op.drop_column('scale_source')
        batch_op.drop_column('reference_mm_per_px')
        batch_op.drop_column('scale_mm_per_px')
