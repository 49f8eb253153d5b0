import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.settings")

app = Celery("crier")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_configure.connect
def _reuse_database_connections(sender: Celery, **kwargs) -> None:
    # Read by Celery's Django fix-up under this literal name, which the CELERY_ namespace would strip.
    from django.conf import settings

    sender.conf["CELERY_DB_REUSE_MAX"] = settings.CELERY_DB_REUSE_MAX
