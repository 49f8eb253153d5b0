"""Readiness asks PostgreSQL and Redis and names what is down; liveness asks nothing."""

import socket
import time

import pytest
from django.db import connection


@pytest.fixture(autouse=True)
def forget_readiness():
    from bots import health

    health._checked.clear()  # each test asks afresh, whatever the one before it was answered


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


@pytest.mark.django_db
def test_readiness_opens_no_new_connections_on_every_hit(client, monkeypatch):
    from bots import health

    checks = []
    real_database_check, real_redis_check = health.database_check, health.redis_check
    monkeypatch.setattr(health, "database_check", lambda **kw: checks.append("postgresql") or real_database_check(**kw))
    monkeypatch.setattr(health, "redis_check", lambda **kw: checks.append("redis") or real_redis_check(**kw))
    now = [1000.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: now[0])

    answers = [client.get("/readyz").status_code for _ in range(20)]

    assert answers == [200] * 20
    assert checks == ["postgresql", "redis"]  # an unauthenticated probe cannot make Crier open 40 connections

    now[0] += health.READINESS_CACHE_SECONDS + 0.1
    assert client.get("/readyz").status_code == 200
    assert checks == ["postgresql", "redis"] * 2
