"""One-time patient upload links: signed, expiring, bound to one site, revocable.

The token is an itsdangerous signature over (link id, nonce); the database keeps only the nonce's
SHA-256, so a stolen database cannot mint links and a revoked row kills its token.
A link stays usable for retakes until one of its photos is accepted, or ``MAX_UPLOADS`` are received.
A site has one live link: a new one revokes the older ones, unless its clinic is listed in
``UPLOAD_LINKS_SEVERAL_CLINICS`` (every older text's link then keeps working until it expires).

A text stored in the outbox holds its link sealed (`sealed_link`: the token encrypted with a key derived from
SECRET_KEY), so the database, a backup or a log has no working link; the outbox opens it (`open_links`) only to
hand the text to the transport, and staff pages and logs show it hidden (`hide_links`).
"""
from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
from datetime import timedelta
from typing import Iterable, Optional, Sequence

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import insert, update

from followup.db import db, utcnow
from followup.models import Site, UploadLink

MAX_UPLOADS = 5
_SALT = "upload-link"


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def _hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def create_link(site: Site, *, days: Optional[int] = None) -> tuple[str, UploadLink]:
    """A new link for ``site`` (its older live links revoked, see the module docstring) and its token."""
    days = current_app.config["UPLOAD_LINK_DAYS"] if days is None else days
    _retire_older_links([(site.id, site.patient.clinic_id)])
    nonce = secrets.token_urlsafe(16)
    link = UploadLink(site_id=site.id, nonce_hash=_hash(nonce), expires_at=utcnow() + timedelta(days=days))
    db.session.add(link)
    db.session.flush()
    return _serializer().dumps([link.id, nonce]), link


def create_links(sites: Sequence[tuple[int, int]]) -> list[str]:
    """Tokens of new links for ``(site id, clinic id)`` pairs, in order, as `create_link` makes them.

    Set-based (one multi-row INSERT … RETURNING): a reminder sweep may need ten thousand at once.
    """
    if not sites:
        return []
    _retire_older_links(sites)
    created = utcnow()
    expires = created + timedelta(days=current_app.config["UPLOAD_LINK_DAYS"])
    nonces = [secrets.token_urlsafe(16) for _ in sites]
    table = UploadLink.__table__
    link_ids = db.session.execute(
        insert(table).returning(table.c.id, sort_by_parameter_order=True),
        [dict(site_id=site_id, nonce_hash=_hash(nonce), expires_at=expires, uploads=0, created_at=created)
         for (site_id, _), nonce in zip(sites, nonces)],
    ).scalars().all()
    serializer = _serializer()
    return [serializer.dumps([link_id, nonce]) for link_id, nonce in zip(link_ids, nonces)]


def _retire_older_links(sites: Iterable[tuple[int, int]]) -> None:
    """Revoke the live links of each ``(site id, clinic id)`` about to get a new one: one live link per site
    (an older text's link must not keep working beside the newest), unless the clinic asked for several."""
    several = current_app.config["UPLOAD_LINKS_SEVERAL_CLINICS"]
    revoke_site_links({site_id for site_id, clinic_id in sites if clinic_id not in several})


def link_url(token: str) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}/u/{token}"


_SEALED = re.compile(r"\{upload-link:([A-Za-z0-9_\-=]+)\}")
_PLAIN = re.compile(r"(/u/)[A-Za-z0-9_.\-]+")  # a link or path with its token: an older text, a request's path


def _box() -> Fernet:
    # A key of its own (HKDF): the sealed tokens share nothing usable with sessions or link signatures.
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"scarwatch: upload links in stored texts").derive(current_app.config["SECRET_KEY"].encode())
    return Fernet(base64.urlsafe_b64encode(key))


def sealed_link(token: str) -> str:
    """The link of ``token`` as a stored text holds it: ``{upload-link:…}``, the token encrypted."""
    return "{upload-link:" + _box().encrypt(token.encode()).decode() + "}"


def open_links(text: str) -> str:
    """The text to send: each sealed link back to its URL (the same URL every time the text is opened).

    ValueError when one cannot be opened (SECRET_KEY changed since the text was stored).
    """
    box = _box()

    def url(match: re.Match) -> str:
        try:
            return link_url(box.decrypt(match.group(1).encode()).decode())
        except InvalidToken:
            raise ValueError("its upload link cannot be opened (SECRET_KEY changed since it was queued)") from None

    return _SEALED.sub(url, text)


def hide_links(text: str) -> str:
    """The text to show staff or to log: every upload link without its token."""
    hidden = link_url("…")
    return hide_tokens(_SEALED.sub(lambda _: hidden, text))


def hide_tokens(text: str) -> str:
    """``text`` with the token of every ``/u/<token>`` path or URL hidden: what a log line may say about a
    patient's page (its path, a request line). Needs no app context (access logs are written after one)."""
    return _PLAIN.sub(r"\1…", text)


class HideTokensInLogs(logging.Filter):
    """For the loggers that write request lines the app does not format itself (the development server's and
    gunicorn's access logs): the line is written with its /u/ token hidden."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/u/" in message:
            record.msg, record.args = hide_tokens(message), None
        return True


#: Loggers whose lines carry a request's path as the client sent it.
ACCESS_LOGGERS = ("werkzeug", "gunicorn.access")


def hide_tokens_in_access_logs() -> None:
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideTokensInLogs) for f in logger.filters):
            logger.addFilter(HideTokensInLogs())


class LinkProblem(Exception):
    """Why a token cannot be used: ``reason`` is invalid, expired, revoked or used."""

    def __init__(self, reason: str, link: Optional[UploadLink] = None):
        super().__init__(reason)
        self.reason = reason
        self.link = link


def resolve_link(token: str) -> UploadLink:
    """The live link behind ``token``; raises LinkProblem otherwise."""
    try:
        link_id, nonce = _serializer().loads(token)
    except (BadSignature, ValueError, TypeError):
        raise LinkProblem("invalid") from None
    link = db.session.get(UploadLink, link_id) if isinstance(link_id, int) else None
    if link is None or not isinstance(nonce, str) or not secrets.compare_digest(link.nonce_hash, _hash(nonce)):
        raise LinkProblem("invalid")
    if link.revoked_at is not None:
        raise LinkProblem("revoked", link)
    if link.used_at is not None or link.uploads >= MAX_UPLOADS:
        raise LinkProblem("used", link)
    if link.expires_at <= utcnow():
        raise LinkProblem("expired", link)
    return link


def take_upload_slot(link: UploadLink) -> bool:
    """Count one upload on `link` if it still takes uploads; False when it no longer does.

    One conditional UPDATE, in the caller's transaction: parallel uploads on one link cannot all read
    "4 of 5" and pass (a read-modify-write did, and the counter ended at 1).
    """
    taken = db.session.execute(
        update(UploadLink)
        .where(UploadLink.id == link.id, UploadLink.uploads < MAX_UPLOADS, UploadLink.used_at.is_(None),
               UploadLink.revoked_at.is_(None))
        .values(uploads=UploadLink.uploads + 1)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    db.session.expire(link, ["uploads"])
    return taken


def revoke_site_links(site_ids: Iterable[int]) -> None:
    """Revoke every live link of these sites."""
    ids = sorted(site_ids)
    for start in range(0, len(ids), 2000):  # bounded IN lists
        db.session.execute(
            update(UploadLink)
            .where(UploadLink.site_id.in_(ids[start:start + 2000]), UploadLink.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
