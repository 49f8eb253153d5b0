"""The API's JSON parsers (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``): bounded as every JSON body is
(``core.json``), without NUL characters, and a larger cap for the bulk upload."""

from __future__ import annotations

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.parsers import BaseParser, JSONParser

from core.json import TOO_DEEP, JSONTooDeep, json_depth_check, json_loads_bounded

MAX_BULK_BYTES = 32 * 1024 * 1024  # 10,000 full rows with attributes: about 5 to 15 MB


def _first_nul(value, path: str = "") -> str | None:
    """Where a NUL character hides in parsed JSON (PostgreSQL refuses it in text), or None."""
    if isinstance(value, str):
        return (path or "non_field_errors") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where
            if (found := _first_nul(item, where)) is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _first_nul(item, f"{path}[{index}]" if path else f"[{index}]")) is not None:
                return found
    return None


class CrierJSONParser(JSONParser):
    """JSON nested no deeper than MAX_JSON_DEPTH and without NUL characters: refused (the field named
    for a NUL) before any lookup can trip on one."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(f"JSON parse error - {TOO_DEEP}.") from exc
        try:
            json_depth_check(data)
        except JSONTooDeep as exc:
            raise ParseError(f"JSON parse error - {exc}.") from exc
        where = _first_nul(data)
        if where is not None:
            raise ValidationError({where: ["Text may not contain NUL (\\u0000) characters."]})
        return data


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = f"The body is over {MAX_BULK_BYTES // (1024 * 1024)} MB; send fewer people per call."


class BulkJSONParser(BaseParser):
    """JSON for the bulk upload. DRF's JSONParser goes through ``request.body``, capped by Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default: about 5,000 full rows); this one reads the
    stream itself, up to MAX_BULK_BYTES, so the other endpoints keep the small cap."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > MAX_BULK_BYTES:
            raise PayloadTooLarge()
        raw = stream.read(MAX_BULK_BYTES + 1)
        if len(raw) > MAX_BULK_BYTES:
            raise PayloadTooLarge()
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json_loads_bounded(raw.decode(encoding))
        except ValueError as exc:  # also UnicodeDecodeError and JSONTooDeep
            raise ParseError(f"JSON parse error - {exc}") from exc
