"""patient identifier: the record's own identifier (system, value), unique per clinic, for FHIR enrolment

Revision ID: 0009_patient_identifier
Revises: 0008_inbound_per_clinic
Create Date: 2026-12-05 19:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009_patient_identifier"
down_revision = "0008_inbound_per_clinic"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('identifier_system', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('identifier_value', sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint('uq_patient_clinic_identifier',
                                          ['clinic_id', 'identifier_system', 'identifier_value'])


def downgrade():
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_constraint('uq_patient_clinic_identifier', type_='unique')
        batch_op.drop_column('identifier_value')
        batch_op.drop_column('identifier_system')
