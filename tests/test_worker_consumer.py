"""The worker's consumer outlives the loss of its broker connection."""

from __future__ import annotations

from unittest import mock

from django.conf import settings

from settings.celery import Consumer, app


def lost_consumer(close_error: Exception) -> Consumer:
    """A consumer as it is when Redis has just gone away: its connection collected, and closing it fails the
    way a collected Redis channel with unacknowledged messages does (its client is gone)."""
    consumer = Consumer.__new__(Consumer)
    consumer.app = app
    consumer.connection = mock.Mock(close=mock.Mock(side_effect=close_error))
    consumer.qos_global = False
    consumer.pool, consumer.prefetch_multiplier, consumer.initial_prefetch_count = mock.Mock(num_processes=4), 8, 32
    return consumer


def test_a_failing_close_of_the_lost_connection_does_not_stop_the_worker():
    consumer = lost_consumer(AttributeError("'NoneType' object has no attribute 'hostname'"))
    close = consumer.connection.close

    consumer.on_connection_error_after_connected(ConnectionError("Connection closed by server."))

    close.assert_called_once_with()
    assert consumer.connection is None  # Celery goes on to reconnect


def test_the_worker_uses_this_consumer():
    assert settings.CELERY_WORKER_CONSUMER == "settings.celery:Consumer"
    assert app.conf.worker_consumer == "settings.celery:Consumer"
