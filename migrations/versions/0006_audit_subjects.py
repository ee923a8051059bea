"""audit subjects: the patients each audit event showed, indexed by patient ("who saw patient X")

Revision ID: 0006_audit_subjects
Revises: 0005_session_version
Create Date: 2026-12-06 10:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006_audit_subjects"
down_revision = "0005_session_version"
branch_labels = None
depends_on = None

# Earlier events name one record: its patient becomes the event's subject (list views named only the clinic,
# so their patients cannot be recovered).
_BACKFILL = {
    "patient": "SELECT e.id, p.id FROM audit_event e JOIN patient p ON p.id = e.record_id",
    "site": "SELECT e.id, s.patient_id FROM audit_event e JOIN site s ON s.id = e.record_id",
    "photo": "SELECT e.id, s.patient_id FROM audit_event e JOIN photo ph ON ph.id = e.record_id "
             "JOIN site s ON s.id = ph.site_id",
    "alert": "SELECT e.id, s.patient_id FROM audit_event e JOIN alert a ON a.id = e.record_id "
             "JOIN site s ON s.id = a.site_id",
    "analysis": "SELECT e.id, s.patient_id FROM audit_event e JOIN analysis an ON an.id = e.record_id "
                "JOIN photo ph ON ph.id = an.photo_id JOIN site s ON s.id = ph.site_id",
    "inbound_message": "SELECT e.id, m.patient_id FROM audit_event e JOIN inbound_message m ON m.id = e.record_id "
                       "AND m.patient_id IS NOT NULL",
}


def upgrade():
    op.create_table('audit_subject',
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('audit_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['audit_id'], ['audit_event.id'], name=op.f('fk_audit_subject_audit_id_audit_event')),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_audit_subject_patient_id_patient')),
    sa.PrimaryKeyConstraint('patient_id', 'audit_id', name=op.f('pk_audit_subject'))
    )
    with op.batch_alter_table('audit_subject', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_subject_audit_id'), ['audit_id'], unique=False)

    for record_type, select in _BACKFILL.items():
        op.execute(sa.text(f"INSERT INTO audit_subject (audit_id, patient_id) {select} "
                           "WHERE e.record_type = :record_type").bindparams(record_type=record_type))


def downgrade():
    with op.batch_alter_table('audit_subject', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_subject_audit_id'))

    op.drop_table('audit_subject')
