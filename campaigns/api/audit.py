"""The audit trail: every call to the REST API made with a key is recorded with its answer."""

from __future__ import annotations

from campaigns.models import ApiRequest


class ApiAuditMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        api_key = getattr(request, "crier_api_key", None)
        if api_key is not None:
            ApiRequest.objects.create(
                api_key=api_key,
                method=request.method,
                path=request.path[:500],
                status_code=response.status_code,
                idempotency_key=request.headers.get("Idempotency-Key", "")[:255],
            )
        return response
