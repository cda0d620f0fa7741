"""Typed wire messages: request models refuse as documented; both SDKs speak one version."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from signaling.server.session import HANDLER_TYPES
from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.messages import (
    PROTOCOL_VERSION,
    REQUESTS,
    RESPONSES,
    GetAttendees,
    Join,
    Remove,
    SetMediaMode,
    Target,
    parse_data,
)


def refusal(model: Any, data: dict[str, Any]) -> str:
    with pytest.raises(PodiumError) as info:
        parse_data(model, data)
    assert info.value.code == ErrorCode.INVALID_REQUEST
    return info.value.message


def test_every_request_type_has_a_model_and_a_handler() -> None:
    assert frozenset(REQUESTS) == HANDLER_TYPES
    assert set(RESPONSES) <= set(REQUESTS)


def test_request_fields_are_strictly_typed_and_refusals_name_them() -> None:
    assert refusal(Join, {}) == "field 'token' must be a str"
    assert refusal(Join, {"token": None}) == "field 'token' must be a str"
    assert "'room'" in refusal(Join, {"token": "t", "room": 5})
    assert "'limit'" in refusal(GetAttendees, {"limit": True})  # a bool is no integer
    assert "'limit'" in refusal(GetAttendees, {"limit": 5.0})
    assert "'limit'" in refusal(GetAttendees, {"limit": "5"})
    assert "'ban'" in refusal(Remove, {"participant": "x", "ban": 1})
    assert "king" in refusal(GetAttendees, {"role": "king"})
    assert "'role' must be a str" in refusal(GetAttendees, {"role": 3})
    assert "forward, mix, auto" in refusal(SetMediaMode, {"mode": "loud"})


def test_optional_null_is_absent_and_unknown_fields_are_ignored() -> None:
    assert parse_data(Join, {"token": "t", "room": None, "future": 1}) == Join(token="t")
    assert parse_data(Target, {"participant": None}).participant is None
    assert parse_data(GetAttendees, {"role": "speaker"}).role == "speaker"


def test_the_javascript_sdk_speaks_the_same_protocol_version() -> None:
    source = (Path(__file__).resolve().parents[3] / "signaling/static/podium.js").read_text()
    declared = re.search(r"export const PROTOCOL_VERSION = (\d+);", source)
    assert declared is not None
    assert int(declared.group(1)) == PROTOCOL_VERSION
    assert "joinInfo.protocol !== PROTOCOL_VERSION" in source
