"""Texts to dermatologists about alerts: an urgent one at once, the others in a daily digest."""
from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, time, timedelta
from typing import Optional

from flask import current_app
from sqlalchemy import func, select

from followup import queries
from followup.db import db
from followup.models import Alert, Clinic, OutboundMessage, Site, User
from followup.models.alerts import AlertPriority, AlertStatus
from followup.outreach import outbox
from followup.outreach.hours import at_local, is_quiet, parse_clock, zone
from followup.outreach.texts import render_sms

log = logging.getLogger(__name__)


def _alert_link(alert_id: Optional[int] = None) -> str:
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return f"{base}/alerts/{alert_id}" if alert_id else f"{base}/queue"


def notify_alert(alert: Alert) -> list[OutboundMessage]:
    """An alert of priority 1 texts the site's dermatologist now (a link only, no patient details); others wait
    for the daily digest. When that dermatologist cannot be reached (left, no phone, none named), every other
    active dermatologist of the clinic with a phone is texted instead: an urgent case is never only a log line.
    Idempotent (one SMS per alert and recipient); part of the caller's transaction."""
    if alert.priority != AlertPriority.URGENT:
        return []
    site = db.session.get(Site, alert.site_id)
    derm = db.session.get(User, site.dermatologist_id) if site and site.dermatologist_id else None
    if derm is not None and derm.active and derm.phone:
        recipients = {f"alert:{alert.id}": derm}
    else:
        recipients = {f"alert:{alert.id}:{colleague.id}": colleague
                      for colleague in queries.dermatologists(alert.clinic_id) if colleague.phone}
    if not recipients:
        log.warning("alert %s: no dermatologist of clinic %s has a phone; it waits in the queue", alert.id,
                    alert.clinic_id)
    body = render_sms("alert_urgent", link=_alert_link(alert.id))
    messages = [message for key, to in recipients.items()
                if (message := outbox.enqueue(key=key, clinic_id=alert.clinic_id, user_id=to.id, to=to.phone,
                                                 body=body, purpose="alert_urgent")) is not None]
    if messages:
        current_app.extensions["wake_outbox"]()  # the scheduler's hook: sent within seconds, not at the next sweep
    return messages


def queue_digests(now: datetime) -> Counter:
    """Once a day (``DIGEST_LOCAL_TIME`` in the clinic's timezone) each dermatologist with new alerts of
    priority 2 and 3 on their sites gets one SMS: how many, and a link."""
    counts: Counter = Counter()
    clock = parse_clock(current_app.config["DIGEST_LOCAL_TIME"])
    rows = db.session.execute(
        select(User, Clinic).join(Clinic, Clinic.id == User.clinic_id)
        .where(User.role == "dermatologist", User.active.is_(True), User.phone.is_not(None))
    ).all()
    for derm, clinic in rows:
        try:
            with db.session.begin_nested():  # one dermatologist's failure must not cost the others their digest
                if _queue_digest(derm, clinic, now, clock):
                    counts["digests"] += 1
        except Exception:  # noqa: BLE001
            log.exception("notify: the digest for user %s could not be queued", derm.id)
            counts["errors"] += 1
    if counts:
        db.session.commit()
    return counts


def _queue_digest(derm: User, clinic: Clinic, now: datetime, clock: time) -> bool:
    tz = zone(clinic.timezone)
    day = now.astimezone(tz).date()
    window_end = at_local(day, tz, clock)
    if now < window_end or is_quiet(now, tz):
        return False
    key = f"digest:{derm.id}:{day.isoformat()}"
    if db.session.execute(select(OutboundMessage.id).where(OutboundMessage.idempotency_key == key)).first():
        return False
    new = db.session.execute(
        select(func.count(Alert.id)).join(Site, Site.id == Alert.site_id)
        .where(Site.dermatologist_id == derm.id, Alert.priority > AlertPriority.URGENT,
               Alert.status.in_((AlertStatus.OPEN, AlertStatus.CLAIMED)),
               Alert.created_at >= window_end - timedelta(days=1), Alert.created_at < window_end)
    ).scalar_one()
    if not new:
        return False
    body = render_sms("alert_digest", count=new, day=day, link=_alert_link())
    return outbox.enqueue(key=key, clinic_id=clinic.id, user_id=derm.id, to=derm.phone, body=body,
                             purpose="alert_digest") is not None
