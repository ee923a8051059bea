"""The SQLAlchemy handle and declarative base shared by every model, and the few statements that differ between
SQLite and PostgreSQL."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, MetaData, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so later migrations can drop them (also on SQLite in batch mode).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: The largest id a row can have: ids are INTEGER columns, 32-bit on PostgreSQL. A larger id in a URL, a filter
#: or a body names nothing (a 404 or a field error); sent to PostgreSQL it would overflow (a 500).
MAX_ID = 2**31 - 1


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(timezone.utc)")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """SQLite: write-ahead logging (readers never wait for the worker's writes), and wait rather than fail
    when another connection holds the write lock."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def is_postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def insert_ignoring_conflicts(model, index_elements: list[str]):
    """``INSERT … ON CONFLICT DO NOTHING`` for the current backend (SQLite or PostgreSQL)."""
    insert = postgresql.insert if is_postgres() else sqlite.insert
    return insert(model).on_conflict_do_nothing(index_elements=index_elements)


def claim_ids(model, candidates) -> list[int]:
    """The ids ``candidates`` (a SELECT of ``model.id``) finds, locked for this transaction on PostgreSQL.

    ``FOR UPDATE SKIP LOCKED`` in its own statement: inside ``UPDATE … WHERE id IN (subquery)`` PostgreSQL may
    run the subquery more than once and update more rows than its LIMIT. The caller's conditional UPDATE
    (``status = 'pending'``) then decides between processes on SQLite, which serialises writers.
    """
    if is_postgres():
        candidates = candidates.with_for_update(skip_locked=True, of=model)
    return list(db.session.execute(candidates).scalars())


def by_id(model, ids) -> dict[int, Any]:
    """The rows of ``model`` with these ids, by id (one query)."""
    if not ids:
        return {}
    return {row.id: row for row in db.session.execute(select(model).where(model.id.in_(list(ids)))).scalars()}
