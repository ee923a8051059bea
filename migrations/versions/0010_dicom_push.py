"""dicom push: each photo's push to the DICOMweb archive (state, tries, next try)

Revision ID: 0010_dicom_push
Revises: 0009_patient_identifier
Create Date: 2026-12-05 19:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

import followup.db

# revision identifiers, used by Alembic.
revision = '0010_dicom_push'
down_revision = '0009_patient_identifier'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('dicom_push',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('photo_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_try_at', followup.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('sent_at', followup.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', followup.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['photo_id'], ['photo.id'], name=op.f('fk_dicom_push_photo_id_photo')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dicom_push'))
    )
    with op.batch_alter_table('dicom_push', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dicom_push_photo_id'), ['photo_id'], unique=True)
        batch_op.create_index('ix_dicom_push_sweep', ['state', 'next_try_at'], unique=False)



def downgrade():
    with op.batch_alter_table('dicom_push', schema=None) as batch_op:
        batch_op.drop_index('ix_dicom_push_sweep')
        batch_op.drop_index(batch_op.f('ix_dicom_push_photo_id'))

    op.drop_table('dicom_push')
