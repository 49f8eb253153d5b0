from django.conf import settings
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.cache import never_cache

from .health import readiness


@never_cache
def livez(request):
    """The process answers; no I/O."""
    return JsonResponse({"ok": True})


@never_cache
def readyz(request):
    """PostgreSQL and Redis answer: 200, else 503 naming what is down."""
    checks = readiness(timeout=settings.HEALTH_CHECK_TIMEOUT_SECONDS)
    ok = all(state == "ok" for state in checks.values())
    return JsonResponse({"ok": ok, "checks": checks}, status=200 if ok else 503)


# /healthz is readiness too, as the demo, the benchmarks and the compose file's probe expect.
urlpatterns = [
    path("livez", livez, name="livez"),
    path("readyz", readyz, name="readyz"),
    path("healthz", readyz, name="healthz"),
]
