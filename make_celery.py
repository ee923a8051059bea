"""The Celery worker's entry point (Flask's pattern): ``celery -A make_celery worker -Q photos`` or ``-Q messages``.

It builds the app with the same factory as every other process, from the same environment variables; the
Celery app is that app's ``extensions["celery"]`` (`followup.analysis.celery_app.init_app`).
"""
from celery.signals import worker_process_init

from app import create_app
from followup.db import db

flask_app = create_app()
celery_app = flask_app.extensions["celery"]


@worker_process_init.connect
def _own_connections(**_) -> None:
    """A forked worker process opens its own database connections, never the parent's."""
    with flask_app.app_context():
        db.engine.dispose(close=False)
