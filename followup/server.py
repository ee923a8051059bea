"""``flask --app app serve`` (``make run``): gunicorn, one worker process with threads, and inside that worker
the photo-analysis thread and the reminder scheduler, as one process on one machine needs them.

Gunicorn's master binds the port and forks the worker; the worker starts the background threads after the fork
(``post_worker_init``), so a worker gunicorn restarts starts them again. Production runs gunicorn on its own
with ``SCHEDULER_ENABLED=0`` and a separate ``flask worker`` / ``flask scheduler`` (see the README).
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

from flask import Flask
from gunicorn.app.base import BaseApplication

THREADS = 8  # default of `serve --threads`


def banner(app: Flask, address: str, *, threads: int = THREADS) -> str:
    """The start-up lines: where to go, how to sign in (when the demo users exist), how long it took."""
    from sqlalchemy import select

    from followup.db import db
    from followup.demo import ADMIN, DERM
    from followup.models import User

    lines = [f"Scar Watch is serving at {address}  (gunicorn: 1 worker, {threads} threads; photo worker and "
             f"scheduler inside)"]
    with app.app_context():
        emails = set(db.session.execute(select(User.email).where(User.email.in_([DERM[0], ADMIN[0]]))).scalars())
        db.session.remove()
        db.engine.dispose()  # the worker forked from here opens its own connections
    if DERM[0] in emails:
        lines.append(f"Demo sign-ins: dermatologist {DERM[0]} / {DERM[1]}"
                     + (f", admin {ADMIN[0]} / {ADMIN[1]}" if ADMIN[0] in emails else ""))
    started = os.environ.get("SCARWATCH_RUN_STARTED")
    if started and started.isdigit():
        lines.append(f"Ready {time.time() - int(started):.0f} s after `make run` began.")
    lines.append("Ctrl-C stops it.")
    return "\n".join(lines)


def start_background(app: Flask) -> None:
    """In the serving process: the photo worker thread, and the reminder scheduler when SCHEDULER_ENABLED."""
    from followup.analysis.jobs import start_worker
    from followup.db import db
    from followup.outreach.scheduler import start_embedded

    with app.app_context():
        db.engine.dispose(close=False)  # connections inherited from the master are not this process's
    start_worker(app)
    start_embedded(app)


class Server(BaseApplication):
    """Gunicorn serving ``app`` on ``host:port`` with the background threads in its worker."""

    def __init__(self, app: Flask, *, host: str, port: int, threads: int = THREADS,
                 announce: Optional[Callable[[str], None]] = print, **options: Any):
        self.application = app
        address = f"http://{host}:{port}"
        self.options = {
            "bind": f"{host}:{port}", "workers": 1, "worker_class": "gthread", "threads": threads,
            "timeout": 120, "graceful_timeout": 10, "accesslog": "-", "errorlog": "-",
            "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
            "control_socket_disable": True,  # no shared ~/.gunicorn socket: several checkouts may run at once
            "post_worker_init": lambda worker: start_background(worker.app.application),
            "when_ready": lambda _server: announce and announce(banner(app, address, threads=threads)),
            **options,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application
