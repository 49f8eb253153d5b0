"""Readiness asks PostgreSQL and Redis and names what is down; liveness asks nothing."""

import socket
import time

import pytest
from django.db import connection


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/readyz", "/healthz"])
def test_it_is_ready_when_postgresql_and_redis_answer(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "checks": {"postgresql": "ok", "redis": "ok"}}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/readyz", "/healthz"])
def test_it_is_not_ready_while_redis_is_down(client, settings, url):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    started = time.monotonic()
    response = client.get(url)
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["checks"]["postgresql"] == "ok"
    assert body["checks"]["redis"] == "ConnectionError"


@pytest.mark.django_db
def test_it_is_not_ready_while_postgresql_is_down(client, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(connection.settings_dict, "PORT", closed_port())
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"ok": False, "checks": {"postgresql": "OperationalError", "redis": "ok"}}


def test_liveness_answers_without_postgresql_or_redis(client, settings, monkeypatch):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    monkeypatch.setitem(connection.settings_dict, "PORT", closed_port())
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
