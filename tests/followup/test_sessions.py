"""Sessions and API tokens end on the server: sign-out, a new password, deactivation, DELETE /api/v1/auth/token."""
from __future__ import annotations

from sqlalchemy import select, update

from followup.auth import end_web_sessions
from followup.db import db
from followup.models import ApiToken, AuditEvent, User
from tests.conftest import PASSWORD

NEW_PASSWORD = "a-brand-new-password"


def login(client, email="derm@north.test", password=PASSWORD):
    assert client.post("/login", data={"email": email, "password": password}).status_code == 302


def copy_of(app, client):
    """Another browser holding a copy of ``client``'s session cookie (another tab, a stolen cookie)."""
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value, domain="localhost")
    return other


def signed_in(client) -> bool:
    return client.get("/queue").status_code == 200


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(app, client, world):
    login(client)
    copy = copy_of(app, client)
    assert signed_in(copy)
    assert client.post("/logout").status_code == 302
    assert not signed_in(client)
    assert not signed_in(copy), "a copied cookie outlived the sign-out"
    login(client)
    assert signed_in(client)


def test_a_session_naming_no_ascii_user_id_is_signed_out_not_a_server_error(app, client, world):
    login(client)
    with client.session_transaction() as session:
        session["_user_id"] = "²:0"  # a digit to str.isdigit(), not to int()
    assert client.get("/queue").status_code == 302


def test_a_new_password_ends_every_session_and_token_of_the_user(app, client, world):
    login(client)
    token = world.token(client, "derm@north.test")
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/alerts", headers=bearer).status_code == 200
    admin = app.test_client()
    login(admin, "admin@north.test")
    response = admin.post(f"/users/{world.derm.id}/password", data={"password": NEW_PASSWORD})
    assert response.status_code == 303
    assert not signed_in(client)
    assert app.test_client().get("/api/v1/alerts", headers=bearer).status_code == 401
    assert db.session.execute(select(ApiToken.revoked_at)).scalar_one() is not None
    assert signed_in(admin), "the admin's own session is untouched"
    login(client, password=NEW_PASSWORD)
    assert client.post("/login", data={"email": "derm@north.test", "password": PASSWORD}).status_code == 401
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "set_password")).scalar_one().record_id \
        == world.derm.id
    too_short = admin.post(f"/users/{world.derm.id}/password", data={"password": "short"}, follow_redirects=True)
    assert "at least 12 characters" in too_short.get_data(as_text=True)
    assert client.post(f"/users/{world.admin.id}/password", data={"password": NEW_PASSWORD}).status_code == 403


def test_an_admin_changing_their_own_password_stays_signed_in_here_only(app, client, world):
    login(client, "admin@north.test")
    elsewhere = copy_of(app, client)
    client.post(f"/users/{world.admin.id}/password", data={"password": NEW_PASSWORD})
    assert signed_in(client)
    assert not signed_in(elsewhere)


def test_deactivation_ends_sessions_and_tokens_for_good(app, client, world):
    login(client)
    token = world.token(client, "derm@north.test")
    admin = app.test_client()
    login(admin, "admin@north.test")
    admin.post(f"/users/{world.derm.id}/active", data={"active": "0"})
    admin.post(f"/users/{world.derm.id}/active", data={"active": "1"})
    db.session.expire_all()
    assert db.session.get(User, world.derm.id).active
    # Reactivated, the account signs in afresh; what was open before the deactivation stays closed.
    assert not signed_in(client)
    assert client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    login(client)
    assert signed_in(client)


def test_two_ends_of_sessions_at_once_both_count(app, world):
    user = db.session.get(User, world.derm.id)
    before = user.session_version
    # Another request ends the sessions after this one read the user: its increment must not be lost.
    db.session.execute(update(User).where(User.id == user.id).values(session_version=User.session_version + 1)
                       .execution_options(synchronize_session=False))
    end_web_sessions(user)
    db.session.commit()
    assert db.session.scalar(select(User.session_version).where(User.id == user.id)) == before + 2
    assert user.session_version == before + 2


def test_delete_token_ends_the_calling_token_only(app, world):
    client = app.test_client()
    first, second = world.token(client, "derm@north.test"), world.token(client, "derm@north.test")
    response = client.delete("/api/v1/auth/token", headers={"Authorization": f"Bearer {first}"})
    assert response.status_code == 204 and response.data == b""
    assert client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    again = client.delete("/api/v1/auth/token", headers={"Authorization": f"Bearer {first}"})
    assert again.status_code == 401 and again.get_json()["error"]["code"]
    assert client.delete("/api/v1/auth/token").status_code == 401
    revoked = db.session.execute(select(AuditEvent).where(AuditEvent.action == "revoke_token")).scalars().all()
    ended = db.session.execute(select(ApiToken).where(ApiToken.revoked_at.is_not(None))).scalar_one()
    assert [(e.user_id, e.record_type, e.record_id) for e in revoked] == [(world.derm.id, "api_token", ended.id)]
    revoked = db.session.execute(select(ApiToken).where(ApiToken.revoked_at.is_not(None))).scalars().all()
    assert len(revoked) == 1


def test_delete_token_is_in_the_openapi_document(client):
    operation = client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/auth/token"]["delete"]
    assert "204" in operation["responses"]
    assert operation["security"] == [{"bearerAuth": []}]
