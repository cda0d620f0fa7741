"""Server API bodies and queries from their models: strict, closed, null refused, the first
bad field named; the OpenAPI document's limits are the models' limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signaling.wire import rest
from signaling.wire.openapi import spec
from signaling.wire.rest import (
    CreateRoom,
    FieldError,
    ListParticipants,
    RemoveParticipant,
    SendMessage,
    parse_body,
    parse_query,
)


def refused(model: Any, body: Any) -> str:
    with pytest.raises(FieldError) as info:
        parse_body(model, json.dumps(body).encode())
    assert info.value.message.startswith(f"{info.value.field}: ")
    return info.value.field


def test_integers_are_json_schema_integers() -> None:
    room = parse_body(CreateRoom, b'{"name": "r", "max_speakers": 5.0, "empty_timeout": 60}')
    assert (room.max_speakers, room.empty_timeout) == (5, 60.0)
    assert type(room.max_speakers) is int
    assert refused(CreateRoom, {"name": "r", "max_speakers": 5.5}) == "max_speakers"
    assert refused(CreateRoom, {"name": "r", "max_speakers": True}) == "max_speakers"
    assert refused(CreateRoom, {"name": "r", "max_speakers": "5"}) == "max_speakers"
    assert refused(CreateRoom, {"name": "r", "empty_timeout": False}) == "empty_timeout"


def test_the_first_bad_field_in_order_is_named() -> None:
    assert refused(CreateRoom, {"name": "r", "colour": 1, "max_speakers": 0}) == "colour"
    assert refused(CreateRoom, {"max_speakers": 0}) == "name"
    body = {"name": "r", "metadata": None, "max_speakers": 0}
    assert refused(CreateRoom, body) == "max_speakers"
    assert refused(CreateRoom, {"name": "r", "empty_timeout": None}) == "empty_timeout"
    assert refused(SendMessage, {}) == "text"
    assert refused(SendMessage, {"to": "ada"}) == "text"
    assert parse_body(SendMessage, b'{"data": {}}').data == {}


def test_metadata_is_bounded_in_keys_and_bytes() -> None:
    many = {f"k{i}": i for i in range(rest.MAX_METADATA_KEYS + 1)}
    assert refused(CreateRoom, {"name": "r", "metadata": many}) == "metadata"
    big = {"a": "x" * rest.MAX_METADATA_BYTES}
    assert refused(CreateRoom, {"name": "r", "metadata": big}) == "metadata"
    fine = {f"k{i}": i for i in range(rest.MAX_METADATA_KEYS)}
    assert parse_body(CreateRoom, json.dumps({"name": "r", "metadata": fine}).encode())


def test_queries_are_converted_and_checked() -> None:
    page = parse_query(ListParticipants, {"role": "speaker", "limit": "7"})
    assert (page.role, page.limit, page.cursor) == ("speaker", 7, None)
    assert parse_query(ListParticipants, {}).limit == rest.DEFAULT_PAGE_SIZE
    assert parse_query(RemoveParticipant, {"ban": "true"}).ban is True
    for query in ({"ban": "yes"}, {"ban": "1"}, {"reason": ""}):
        with pytest.raises(FieldError):
            parse_query(RemoveParticipant, query)
    with pytest.raises(FieldError, match="cursor: must be at least 1 characters"):
        parse_query(ListParticipants, {"cursor": ""})  # a bound below, none above


def test_the_documents_limits_are_the_models() -> None:
    document = spec()
    schemas = document["components"]["schemas"]
    name = schemas["CreateRoom"]["properties"]["name"]
    assert name["maxLength"] == rest.MAX_NAME_LENGTH
    assert schemas["SendMessage"]["properties"]["text"]["maxLength"] == rest.MAX_TEXT_LENGTH
    operation = document["paths"]["/v1/rooms/{room}/participants/{identity}"]["delete"]
    reason = next(p for p in operation["parameters"] if p["name"] == "reason")
    assert reason["schema"]["maxLength"] == rest.MAX_REASON_LENGTH
    assert set(document["webhooks"]) == set(rest.WEBHOOKS)
