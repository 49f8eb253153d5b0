"""The Bot Framework wire models, kept behind this one module so the schema library
(``botbuilder-schema`` today, ``microsoft-agents-activity`` one day) can be swapped in one place."""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from msrest.exceptions import DeserializationError
from msrest.serialization import Deserializer

import botbuilder.schema as schema
from botbuilder.schema import Activity, ActivityTypes, Attachment, ChannelAccount, ConversationParameters
from botbuilder.schema.teams import TeamsChannelData, TenantInfo

ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


def conversation_parameters(*, bot_id: str, bot_name: str, member_id: str, tenant_id: str) -> dict[str, Any]:
    """The body of CreateConversation for a one-to-one chat, in the documented camelCase shape.
    Serialising the model costs about 0.2 ms, so it is done once per bot and tenant."""
    body = copy.deepcopy(_conversation_template(bot_id, bot_name, tenant_id))
    body["members"] = [{"id": member_id}]
    return body


@lru_cache(maxsize=256)
def _conversation_template(bot_id: str, bot_name: str, tenant_id: str) -> dict[str, Any]:
    body = ConversationParameters(
        is_group=False,
        bot=ChannelAccount(id=bot_id, name=bot_name),
        members=[ChannelAccount(id="")],
        tenant_id=tenant_id,
        channel_data=TeamsChannelData(tenant=TenantInfo(id=tenant_id)),
    ).serialize()
    # The library writes "tenantID"; Teams documents "tenantId".
    body.pop("tenantID", None)
    body["tenantId"] = tenant_id
    body["channelData"].pop("onBehalfOf", None)
    return body


def message_activity(
    *, text: str | None = None, card: dict[str, Any] | None = None, summary: str | None = None
) -> dict[str, Any]:
    """A message activity: markdown text, an Adaptive Card, or both."""
    attachments = [Attachment(content_type=ADAPTIVE_CARD_CONTENT_TYPE, content=card)] if card is not None else None
    return Activity(
        type=ActivityTypes.message,
        text=text or None,
        text_format="markdown" if text else None,
        summary=summary or None,
        attachments=attachments,
    ).serialize()


class ActivityShapeError(ValueError):
    """An inbound activity a field of which has the wrong shape (``field``: where, as ``from.id`` or ``entities[0]``)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"The activity's {field!r} does not have the shape the Bot Framework gives it.")
        self.field = field


class _Unusual(Exception):
    """What the quick reading below does not read as the library would: the library reads it."""

    def __init__(self, field: str) -> None:
        self.field = field


def parse_activity(data: dict[str, Any]) -> Activity:
    """An inbound activity, as the library's ``from_dict`` reads it (which accepts Teams' key casing,
    ``conversation.tenantId``), or ActivityShapeError. The library's reading costs about 0.5 ms, most of an inbound
    event's time in Python: the activities Teams sends, in its own casing, are read by ``_model`` from the library's
    own attribute maps in a tenth of that, to the same models; anything else is left to the library."""
    try:
        return _model(Activity, data, "")
    except _Unusual as unusual:
        try:
            return Activity().from_dict(data)
        except (DeserializationError, TypeError, ValueError) as error:
            raise ActivityShapeError(unusual.field) from error


def _model(cls: type, data: Any, where: str) -> Any:
    """As the library reads a model: each key matched to its attribute whatever its casing (Teams writes
    ``tenantId`` where the library has ``tenantID``), and every key not written exactly as the library has it kept
    aside too, in ``additional_properties``."""
    if not isinstance(data, dict):
        raise _Unusual(where or "activity")
    exact, by_case, attributes = _keys(cls)
    prefix = f"{where}." if where else ""
    model = cls()
    extra, taken = {}, set()
    for key, value in data.items():
        if not isinstance(key, str) or key.lower() in attributes:
            raise _Unusual(f"{prefix}{key}")  # a key named as a Python attribute: the library finds it its own way
        found = by_case.get(key.lower())
        if key not in exact:
            extra[key] = value
        if found is None:
            continue
        attribute, kind = found
        if attribute in taken:
            raise _Unusual(f"{prefix}{key}")  # twice, in two casings: which wins is the library's to say
        taken.add(attribute)
        if value is not None:
            setattr(model, attribute, _value(kind, value, f"{prefix}{key}"))
    model.additional_properties = extra
    return model


def _value(kind: str, value: Any, where: str) -> Any:
    if kind == "str":
        if isinstance(value, str):
            return value
    elif kind == "object":
        return value
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "iso-8601":
        if isinstance(value, str):
            try:
                return Deserializer.deserialize_iso(value)  # the library's own reading of a moment
            except DeserializationError:
                raise _Unusual(where) from None
    elif kind.startswith("[") and kind.endswith("]"):
        if isinstance(value, list):
            if kind[1:-1] in _MODELS and None in value:
                raise ActivityShapeError(f"{where}[{value.index(None)}]")  # the library takes it; nobody could read it
            return [_value(kind[1:-1], item, f"{where}[{n}]") for n, item in enumerate(value)]
    elif kind.startswith("{") and kind.endswith("}"):
        if isinstance(value, dict):
            return {name: _value(kind[1:-1], item, f"{where}.{name}") for name, item in value.items()}
    elif kind in _MODELS:
        return _model(_MODELS[kind], value, where)
    raise _Unusual(where)


_MODELS = {cls.__name__: cls for cls in (Activity, *(getattr(schema, name) for name in dir(schema)))
           if isinstance(cls, type) and hasattr(cls, "_attribute_map")}


@lru_cache(maxsize=None)
def _keys(cls: type) -> tuple[frozenset[str], dict[str, tuple[str, str]], frozenset[str]]:
    """The model's keys as the library writes them; each key in lower case with its attribute and type; and its
    attributes' names in lower case where they are not also keys."""
    specs = {attribute: spec for attribute, spec in cls._attribute_map.items() if attribute != "additional_properties"}
    by_case = {spec["key"].lower(): (attribute, spec["type"]) for attribute, spec in specs.items()}
    attributes = frozenset(attribute.lower() for attribute in specs) - set(by_case)
    return frozenset(spec["key"] for spec in specs.values()), by_case, attributes
