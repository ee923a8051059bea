"""Staff sign-in: CSRF on the form, secure cookies, idle timeout, rate limiting."""
import re
import time
from datetime import timedelta

import pytest

from tests.conftest import PASSWORD


def csrf_token(client, path="/login") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


@pytest.fixture
def csrf_app(app):
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def test_login_needs_the_csrf_token(csrf_app, client, world):
    response = client.post("/login", data={"email": "derm@north.test", "password": PASSWORD})
    assert response.status_code == 400
    response = client.post("/login", data={"email": "derm@north.test", "password": PASSWORD,
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie  # PUBLIC_BASE_URL is https


def test_wrong_password_is_refused(csrf_app, client, world):
    response = client.post("/login", data={"email": "derm@north.test", "password": "wrong",
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 401 and b"Wrong e-mail or password" in response.data
    assert client.get("/").status_code == 302


def test_next_must_be_a_local_path(client, world):
    response = client.post("/login?next=https://evil.example/x",
                           data={"email": "derm@north.test", "password": PASSWORD})
    assert response.headers["Location"] == "/"


def test_idle_session_expires(app, client, world):
    app.config["SESSION_IDLE_MINUTES"] = 30
    assert app.permanent_session_lifetime == timedelta(minutes=30)
    client.post("/login", data={"email": "derm@north.test", "password": PASSWORD})
    assert client.get("/").status_code == 200
    app.permanent_session_lifetime = timedelta(seconds=1)
    assert client.get("/").status_code == 200, "activity keeps the session alive"
    time.sleep(2.1)  # idle past the limit
    assert client.get("/").status_code == 302


def test_cookie_session_cannot_post_to_the_api_without_csrf(csrf_app, client, world):
    client.post("/login", data={"email": "derm@north.test", "password": PASSWORD, "csrf_token": csrf_token(client)})
    response = client.post("/api/v1/patients", json={"name": "X", "phone": "+447700900111", "sms_consent": True})
    assert response.status_code == 400
    token = csrf_token(client, "/login")
    response = client.post("/api/v1/patients", json={"name": "X", "phone": "+447700900111", "sms_consent": True},
                           headers={"X-CSRFToken": token})
    assert response.status_code == 201, response.get_json()


@pytest.fixture
def limited_client(app_config, request):
    app_config["RATELIMIT_ENABLED"] = True
    request.getfixturevalue("app")
    return request.getfixturevalue("client")


def test_login_is_rate_limited(limited_client, world):
    client = limited_client
    statuses = [client.post("/api/v1/auth/token", json={"email": "derm@north.test", "password": "bad"}).status_code
                for _ in range(12)]
    assert statuses[:10] == [401] * 10 and statuses[-1] == 429


def test_security_headers(client):
    response = client.get("/login")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
