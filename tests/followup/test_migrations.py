"""The migrations build exactly the models' schema, from empty, on SQLite and PostgreSQL, and go down again."""
import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from app import create_app
from followup.db import db
from tests.conftest import base_config

MIGRATIONS_PG = os.environ.get("TEST_MIGRATIONS_DATABASE_URL", "")
TARGETS = ["sqlite"] + (["postgresql"] if MIGRATIONS_PG else [])


@pytest.fixture(params=TARGETS)
def migrations_app(request, tmp_path):
    config = base_config(tmp_path)
    if request.param == "postgresql":
        config["DATABASE_URL"] = MIGRATIONS_PG
    app = create_app(config)
    with app.app_context():
        if request.param == "postgresql":
            db.drop_all()
            with db.engine.begin() as connection:
                connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        yield app
        db.session.remove()
        db.engine.dispose()


def _differences():
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "render_as_batch": True})
        return compare_metadata(context, db.metadata)


def test_upgrade_matches_models_then_downgrade_and_upgrade_again(migrations_app):
    upgrade()
    assert _differences() == []
    downgrade(revision="base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    upgrade()
    assert _differences() == []
    assert "photo" in inspect(db.engine).get_table_names()
