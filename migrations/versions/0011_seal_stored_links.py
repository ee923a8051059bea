"""seal stored links: texts stored before upload links were sealed hold them as plain URLs; seal them

Revision ID: 0011_seal_stored_links
Revises: 0010_dicom_push
Create Date: 2026-12-05 19:20:00.000000

"""
import re

import sqlalchemy as sa
from alembic import op

revision = "0011_seal_stored_links"
down_revision = "0010_dicom_push"
branch_labels = None
depends_on = None

# An upload link as texts held it before sealing: any base URL, then /u/ and the token.
_PLAIN_LINK = re.compile(r"\S*/u/([A-Za-z0-9_\-]+)")


def upgrade():
    # The app's own sealing (its key comes from SECRET_KEY), so that the outbox opens these as it opens new texts;
    # a text sent already keeps no working link in the database or its backups from now on.
    from followup.records.links import sealed_link

    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, body FROM outbound_message WHERE body LIKE '%/u/%'")).all()
    for row_id, body in rows:
        sealed = _PLAIN_LINK.sub(lambda m: sealed_link(m.group(1)), body)
        if sealed != body:
            bind.execute(sa.text("UPDATE outbound_message SET body = :body WHERE id = :id"),
                         {"body": sealed, "id": row_id})


def downgrade():
    # Nothing to undo: the code of 0010 already opens sealed links, and putting working links back in the
    # database would undo the point.
    pass
