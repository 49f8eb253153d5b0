"""The OpenAPI schema as the API behaves: each operation's scope, its Idempotency-Key header, every
answer it can give in the one error shape (with Retry-After on 429), request bodies that refuse
unknown fields, formats and enums that hold for the data, and real examples."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from . import idempotency
from .permissions import required_scope
from .serializers.common import ErrorSerializer
from .serializers.recipients import MAX_BULK_ROWS


# A delivery's choices that are "" until they apply.
BLANK_ENUMS = (
    ("skip_reason", "SkipReasonEnum", 'Why the person was skipped; "" when they were not.'),
    ("install", "InstallEnum", 'When Crier was to install the app for the person (the campaign\'s install_app): '
     '`installed` when it did, `present` when Graph said they had it; "" otherwise (when Graph refused, the '
     'delivery failed with its code, such as AppBlockedByPolicy, and what to do).'),
    ("notice", "NoticeEnum", "An urgent campaign's pop-up in the person's activity feed, once the message was sent: "
     '`due`, `sending`, `notified` (Microsoft Graph accepted it), `failed` (Graph refused; the audit log says why); '
     '"" for a campaign that is not urgent, or a message not sent.'),
)

def _error(code: str, message: str, fields: dict | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


# What each error answer means, and one real body of it.
ERRORS: dict[str, tuple[str, dict[str, Any]]] = {
    "400": (
        "Invalid input; `fields` says which and why (code `invalid`, or `parse_error` for malformed JSON). "
        "Also the rules a schema cannot express: an id, slug or external id that names nothing, a name "
        "already taken, a template placeholder that does not exist, a cursor this API did not give out, "
        "text with a NUL (\\u0000) character (which PostgreSQL cannot store).",
        _error("invalid", "country: Use a two-letter ISO 3166-1 country code, such as FR.",
               {"country": ["Use a two-letter ISO 3166-1 country code, such as FR."]}),
    ),
    "401": (
        "No API key, or an unknown, revoked or expired one (code `not_authenticated` or "
        "`authentication_failed`).",
        _error("not_authenticated", "Authentication credentials were not provided."),
    ),
    "403": (
        "The key lacks the scope this operation needs (code `missing_scope`).",
        _error("missing_scope", "This API key lacks the campaigns:send scope."),
    ),
    "404": ("No such object (code `not_found`).", _error("not_found", "No Campaign matches the given query.")),
    "409": (
        "Not possible now (codes `invalid_state`, `approval_required`, `asks_invalid`, `in_use`, `concurrent_update`, "
        "`empty_sync`, `idempotency_key_in_progress`).",
        _error("invalid_state", "Campaign 7 is completed; only a draft or scheduled campaign can be edited."),
    ),
    "413": ("The body is too large (code `too_large`).", _error("too_large", "The request body is too large.")),
    "415": (
        "The body is not JSON (code `unsupported_media_type`).",
        _error("unsupported_media_type", 'Unsupported media type "text/plain" in request.'),
    ),
    "422": (
        "This Idempotency-Key was already used for a different request (code `idempotency_key_reused`).",
        _error("idempotency_key_reused",
               "This Idempotency-Key was used for a different request; use a new key for a new request."),
    ),
    "429": (
        "Too many calls with this key (`API_RATE_LIMIT`, code `throttled`); try again after `Retry-After` seconds.",
        _error("throttled", "Request was throttled. Expected available in 12 seconds."),
    ),
}
# Per path, what a request the schema allows may still break: rules no schema can express. Each
# is a 400 naming the field; the operation's 400 lists them.
_UNKNOWN = "names nothing that exists"
_CURSOR = {"cursor": "is not a cursor this API gave out"}
_SOURCE = ("is missing for kind entra_group or team, is given for another kind, or is not a group's object id or a "
           "team's Teams id")
_CAMPAIGN_RULES = {"urgent": "is true for a campaign that is not an announcement",
           "urgent_text": "is empty, or holds a placeholder, for an urgent campaign",
           "acknowledgement": "is policy for a welcome campaign",
           "category": f"{_UNKNOWN}, or is not mandatory for a policy (acknowledgement `policy`)",
           "poll_question": "is empty while poll_options are given, or holds a placeholder",
           "poll_options": "are fewer than 2 or more than 10, or hold an empty, too long, repeated or placeholder "
                           "option, for a poll",
           "poll_closes_at": "is past when set, or is given without a poll",
           "track_clicks": "is true while PUBLIC_BASE_URL is not set",
           "remind_who": "is set for a campaign that is not an announcement, or asks what it does not (an "
                         "acknowledgement, a poll)",
           "remind_after": "is missing while remind_who is set",
           "remind_template": _UNKNOWN}
BUSINESS_RULES: dict[str, dict[str, str]] = {
    "/api/v1/campaigns/": {"template": _UNKNOWN, "audience": _UNKNOWN, **_CAMPAIGN_RULES, **_CURSOR},
    "/api/v1/campaigns/{id}/": {"template": _UNKNOWN, "audience": _UNKNOWN, **_CAMPAIGN_RULES,
                                "kind": "differs from the kind the campaign was created with"},
    "/api/v1/campaigns/{id}/schedule/": {"send_at": "is not in the future"},
    "/api/v1/campaigns/{id}/funnel/": {"by": "is not department, location, country, job_title, locale or "
                                             "attributes.<key>"},
    "/api/v1/campaigns/{id}/test-send/": {"recipients": "holds an external id nobody has"},
    "/api/v1/campaigns/{campaign_id}/deliveries/": _CURSOR,
    "/api/v1/messages/": {"template": _UNKNOWN, "category": _UNKNOWN, "recipients": "holds an external id nobody has"},
    "/api/v1/templates/": {"name": "is taken", "text": "is empty for a markdown template, or uses an unknown "
                           "placeholder", "card": "does not fit the template's kind or is not an Adaptive Card",
                           **_CURSOR},
    "/api/v1/templates/{id}/": {"name": "is taken", "text": "is empty for a markdown template, or uses an "
                                "unknown placeholder", "card": "does not fit the template's kind or is not an "
                                "Adaptive Card"},
    "/api/v1/templates/{id}/preview/": {"recipient": "is missing or nobody's external id"},
    "/api/v1/categories/": {"slug": "is taken", **_CURSOR},
    "/api/v1/categories/{slug}/": {"slug": "is taken"},
    "/api/v1/audiences/": {"name": "is taken", "kind": "does not fit the rules", "rules": "are given to an audience "
                           "that is not of kind rules, or name an unknown field",
                           "members": "hold an external id nobody has", "excluded": "hold an external id nobody has",
                           "source_id": _SOURCE, **_CURSOR},
    "/api/v1/audiences/{id}/": {"name": "is taken", "kind": "does not fit the rules", "rules": "are given to an "
                                "audience that is not of kind rules, or name an unknown field",
                                "members": "hold an external id nobody has",
                                "excluded": "hold an external id nobody has", "source_id": _SOURCE},
    "/api/v1/audiences/groups/": {"search": "is empty"},
    "/api/v1/recipients/": _CURSOR,
    "/api/v1/recipients/bulk/": {"sync": "is not the id of a sync"},
    "/api/v1/opt-outs/": {"recipient": "is nobody's external id", "category": f"{_UNKNOWN}, or is mandatory",
                          **_CURSOR},
}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before calling again.", "schema": {"type": "integer", "example": 12}}
}


class CrierAutoSchema(AutoSchema):
    """Documents, next to each operation's own answers, its scope, its Idempotency-Key and the error
    answers it can give, in the one error shape."""

    def get_tags(self):
        resource = next((part for part in self._tokenize_path() if part != "v1" and "{" not in part), "api")
        return [resource]

    def _scope(self) -> str:
        return str(required_scope(method=self.method, view=self.view))

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is not None:
            needs = f"Needs an API key with the `{self._scope()}` scope."
            operation["description"] = f"{operation.get('description', '')}\n\n{needs}".strip()
        return operation

    def get_extensions(self):
        return {**(super().get_extensions() or {}), "x-required-scopes": [self._scope()]}

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if self.method == "POST":
            parameters.append(
                OpenApiParameter(
                    idempotency.HEADER, {"type": "string", "minLength": 1, "maxLength": 255},
                    OpenApiParameter.HEADER, required=False,
                    # No example value: every example request would share it, and all but the first
                    # would be refused as a reused key.
                    description="Any unique string of 1 to 255 characters, such as `people-2026-11-25`: a retry "
                    "with the same key and body gets the first answer (with `Idempotent-Replayed: true`) and "
                    "does nothing again; the same key with another body is a 422. An answer that asks for a retry "
                    "(5xx, 429, 409 `concurrent_update`) is not kept.",
                )
            )
        return parameters

    def _has_body(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH")

    def _error_codes(self) -> list[str]:
        codes = ["401", "403", "429"]
        if self._has_body() or (self.method == "GET" and getattr(self.view, "action", None) not in ("retrieve", "count")):
            codes.append("400")  # a body, or a query string (filters, cursor, page_size, preview's recipient)
        if "{" in self.path:
            codes.append("404")
        if self.method == "POST" or getattr(self.view, "action", None) in getattr(self.view, "conflict_actions", ()):
            codes.append("409")
        if self._has_body():
            codes += ["413", "415"]
        if self.method == "POST":
            codes.append("422")
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in sorted(self._error_codes()):
            description, example = ERRORS[code]
            rules = BUSINESS_RULES.get(self.path)
            if code == "400" and rules:
                said = "; ".join(f"`{name}` {why}" for name, why in rules.items())
                description = f"{description} Here: {said}."
            error = OpenApiResponse(
                ErrorSerializer, description=description, examples=[OpenApiExample(code, value=example)]
            )
            if code not in responses:
                responses[code] = self._get_response_for_code(error, code, direction=direction)
            for body in responses[code].get("content", {}).values():
                body.setdefault("examples", {code: {"value": example}})
            if code == "429":
                responses[code]["headers"] = RETRY_AFTER
        return responses


# --- After generation: what the serializers cannot say ---------------------------------------

EXAMPLES: dict[str, dict[str, Any]] = {
    "external_id": "E1001", "email": "ada.lovelace@example.com", "upn": "ada.lovelace@example.com",
    "aad_object_id": "6d0f7b6e-2a1e-4c59-8a53-0f6f5a0c1001", "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "first_name": "Ada", "last_name": "Lovelace", "display_name": "Ada Lovelace", "department": "Sales",
    "job_title": "Account manager", "location": "Paris", "country": "FR", "time_zone": "Europe/Paris",
    "locale": "fr-FR", "start_date": "2026-01-05", "slug": "news", "note": "Asked HR",
    "reason": "Wrong date in the message", "public_id": "3f2c1a9e-5b7d-4e0f-9a1b-2c3d4e5f6a7b",
    "activity_id": "1:1aBcD", "error_code": "", "error_message": "", "status_reason": "",
    "category": "news", "field": "country", "message": "Use a two-letter ISO 3166-1 country code, such as FR.",
    "card": {"type": "AdaptiveCard", "version": "1.5",
             "body": [{"type": "TextBlock", "text": "Hello {{first_name}}", "wrap": True}]},
}
EXAMPLES_BY_COMPONENT: dict[str, dict[str, Any]] = {
    "MessageTemplate": {"name": "Office move", "text": "Hello {{first_name}}, we move on Monday."},
    "Category": {"name": "Company news", "description": "News for everyone."},
    "Audience": {"name": "Sales in France", "rules": [{"field": "department", "op": "eq", "value": "Sales"}],
                 "members": ["E1001"], "excluded": ["E1002"]},
    "Campaign": {"name": "Office move"},
    "DirectMessage": {"name": "Laptop ready", "recipients": ["E1001", "E1002"]},
    "TestSend": {"recipients": ["E1001"]},
    "OptOut": {"recipient": "E1001", "category": "news"},
    "Recipient": {"attributes": {"site": "paris", "grade": 7, "manager": True}},
    "RecipientRow": {"attributes": {"site": "paris", "grade": 7, "manager": True}},
    "ErrorDetail": {"code": "invalid", "message": "country: Use a two-letter ISO 3166-1 country code, such as FR.",
                    "fields": {"country": ["Use a two-letter ISO 3166-1 country code, such as FR."]}},
    "TemplatePreview": {"recipient": "E1001",
                        "activity": {"type": "message", "textFormat": "markdown", "text": "Hello Ada, we move on Monday."}},
}


# A character Python's str.strip() keeps: DRF trims text, so one made only of these is empty.
NOT_BLANK = "[^\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"


def postprocess(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """SPECTACULAR_SETTINGS' POSTPROCESSING_HOOKS: request bodies refuse fields they do not name
    (as the API does); text that may be empty is not given a format it would break; opt-outs'
    empty category is said to mean every category; properties get real examples."""
    schemas = result.get("components", {}).get("schemas", {})
    for name, component in schemas.items():
        properties = component.get("properties")
        if properties is None:
            continue
        if name.endswith("Request"):
            component["additionalProperties"] = False
            for prop in properties.values():
                if prop.get("type") == "string" and prop.get("minLength", 0) >= 1 and not (
                    {"pattern", "format", "enum"} & set(prop)
                ):
                    prop["pattern"] = NOT_BLANK  # text is trimmed: blank after trimming is empty
        base = name.removeprefix("Patched").removesuffix("Request")
        for prop_name, prop in properties.items():
            if prop.get("format") == "email":
                del prop["format"]  # may be empty: an address, or "" when the HR system gave none
                prop["description"] = "An email address, or empty when unknown."
            example = EXAMPLES_BY_COMPONENT.get(base, {}).get(prop_name, EXAMPLES.get(prop_name))
            if example is not None and "example" not in prop and "$ref" not in prop and "allOf" not in prop:
                prop["example"] = example
    bulk = schemas.get("RecipientBulkRequest", {}).get("properties", {}).get("recipients")
    if bulk is not None:
        # Each row is checked on its own: one that is not a RecipientRow is reported in `errors`
        # (with a 200), so the body accepts any row.
        bulk["items"] = {"anyOf": [bulk["items"], {}]}
        bulk["maxItems"] = MAX_BULK_ROWS
        bulk["description"] = (
            f"Up to {MAX_BULK_ROWS} people, each a RecipientRow; a row that is not one is reported in `errors`."
        )
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and parameter["name"] not in ("cursor", "page_size"):
                    _empty_means_no_filter(parameter)
    for name, enum, description in BLANK_ENUMS:
        field = schemas.get("Delivery", {}).get("properties", {}).get(name)
        if field is not None:
            schemas.setdefault("BlankEnum", {"enum": [""]})
            field.pop("allOf", None)
            field["oneOf"] = [{"$ref": f"#/components/schemas/{enum}"}, {"$ref": "#/components/schemas/BlankEnum"}]
            field["description"] = description
    opt_out = schemas.get("OptOutRequest", {}).get("properties", {}).get("category")
    if opt_out is not None:
        opt_out.pop("minLength", None)
        opt_out["pattern"] = f"^$|{NOT_BLANK}"  # "" names every category; blank text names none
        opt_out["description"] = (
            'A category slug; null or "" (or leaving it out) for every non-mandatory category.'
        )
    return result


def _empty_means_no_filter(parameter: dict[str, Any]) -> None:
    """A list filter given empty (``?status=``) filters nothing, as django-filter does: its schema
    says so."""
    schema = parameter["schema"]
    if "enum" in schema and "" not in schema["enum"]:
        schema["enum"] = [*schema["enum"], ""]
    elif "format" in schema:
        parameter["schema"] = {"anyOf": [schema, {"type": "string", "maxLength": 0}]}
    else:
        return
    parameter["description"] = f"{parameter.get('description', '')} Empty: no filter.".strip()
