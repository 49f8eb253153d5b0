"""The bot's messaging endpoint, ``POST /api/messages``: where Teams delivers activities."""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.errors import error_body

from .auth import InboundAuthError, parse_body, validate_inbound
from .schema import ActivityShapeError
from .services import activity_handle, activity_tenant, invoke_handle
from .tasks import send_reply

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def messages_endpoint(request: HttpRequest) -> HttpResponse:
    try:
        data = parse_body(request.body)
    except RequestDataTooBig:  # over DATA_UPLOAD_MAX_MEMORY_SIZE: Django alone would answer an HTML 400
        return JsonResponse(error_body("too_large", "The request body is too large."), status=413)
    except ValueError:
        return JsonResponse(error_body("invalid_json", "The body must be a JSON activity."), status=400)
    try:
        validate_inbound(request.headers.get("Authorization", ""), data)
    except InboundAuthError as exc:
        logger.warning("rejected an activity: %s", exc)
        return JsonResponse(error_body("unauthorized", str(exc)), status=exc.status)
    try:
        if data.get("type") == "invoke":  # answered in the response itself: the card the person now sees
            status, body = invoke_handle(data=data)
            return JsonResponse(body, status=status) if body is not None else HttpResponse(status=status)
        replies = activity_handle(data=data)  # in its own transaction: committed when it returns
    except ActivityShapeError as error:  # read before anything is done with it
        logger.warning("refused an activity: %s", error)
        return JsonResponse(error_body("invalid_activity", str(error), {error.field: [str(error)]}), status=400)
    conversation_id = (data.get("conversation") or {}).get("id")
    service_url = data.get("serviceUrl")
    tenant_id = activity_tenant(data=data)
    for text in replies if conversation_id and service_url else []:
        send_reply.delay(service_url, conversation_id, text, tenant_id)
    return HttpResponse(status=200)
