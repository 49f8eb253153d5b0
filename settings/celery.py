import logging
import os

from celery import Celery
from celery.worker.consumer import Consumer as CeleryConsumer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.settings")

app = Celery("crier")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_configure.connect
def _reuse_database_connections(sender: Celery, **kwargs) -> None:
    # Read by Celery's Django fix-up under this literal name, which the CELERY_ namespace would strip.
    from django.conf import settings

    sender.conf["CELERY_DB_REUSE_MAX"] = settings.CELERY_DB_REUSE_MAX


class Consumer(CeleryConsumer):
    """Celery's consumer, surviving the loss of its Redis broker. On losing the connection, Celery collects it
    and then closes it; closing a collected Redis channel that still holds unacknowledged messages raises
    AttributeError (the channel's client is gone), which Celery's ``ignore_errors`` lets through, and the
    worker exits. Here that close fails quietly instead: the messages it would have put back are delivery
    tasks whose rows the reconciler feeds again, and Celery goes on to reconnect."""

    def on_connection_error_after_connected(self, exc):
        connection = self.connection
        if connection is not None:
            close = connection.close

            def close_collected() -> None:
                try:
                    close()
                except AttributeError:
                    logging.getLogger(__name__).warning("the lost broker connection could not be closed; reconnecting")

            connection.close = close_collected
        super().on_connection_error_after_connected(exc)
