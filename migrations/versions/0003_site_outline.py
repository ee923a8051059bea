"""site outline: the scar outlined on the baseline (polygon, source, photo, note); declared and used photo modality

Revision ID: 0003_site_outline
Revises: 0002_reminders
Create Date: 2026-12-05 08:56:50.358092

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003_site_outline"
down_revision = "0002_reminders"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('analysis', schema=None) as batch_op:
        batch_op.add_column(sa.Column('site_flag', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('modality', sa.String(length=12), nullable=True))

    with op.batch_alter_table('photo', schema=None) as batch_op:
        batch_op.add_column(sa.Column('modality', sa.String(length=12), nullable=True))

    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outline_polygon', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('outline_source', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('outline_photo_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('outline_note', sa.String(length=300), nullable=True))
        batch_op.create_index(batch_op.f('ix_site_outline_photo_id'), ['outline_photo_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_site_outline_photo_id_photo'), 'photo', ['outline_photo_id'], ['id'])


def downgrade():
    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_site_outline_photo_id_photo'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_site_outline_photo_id'))
        batch_op.drop_column('outline_note')
        batch_op.drop_column('outline_photo_id')
        batch_op.drop_column('outline_source')
        batch_op.drop_column('outline_polygon')

    with op.batch_alter_table('photo', schema=None) as batch_op:
        batch_op.drop_column('modality')

    with op.batch_alter_table('analysis', schema=None) as batch_op:
        batch_op.drop_column('modality')
        batch_op.drop_column('site_flag')
