from __future__ import annotations

import json

import pytest

from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.protocol import encode_error, encode_event, encode_response, parse_request

TYPES = frozenset({"join", "ping"})


def refused(raw: str | bytes) -> PodiumError:
    with pytest.raises(PodiumError) as info:
        parse_request(raw, TYPES, max_bytes=1024)
    return info.value


def test_valid_request() -> None:
    request = parse_request('{"id": 3, "type": "ping", "data": {"a": 1}}', TYPES)
    assert (request.id, request.type, request.data) == (3, "ping", {"a": 1})
    assert parse_request('{"id": "x", "type": "join"}', TYPES).data == {}


@pytest.mark.parametrize(
    ("raw", "code", "request_id"),
    [
        ("{not json", "malformed_json", None),
        (b"\xff\xfe", "malformed_json", None),
        ("[1, 2]", "invalid_request", None),
        ('{"type": "ping"}', "invalid_request", None),
        ('{"id": true, "type": "ping"}', "invalid_request", None),
        ('{"id": 1}', "invalid_request", 1),
        ('{"id": 1, "type": "teleport"}', "unknown_type", 1),
        ('{"id": 1, "type": "ping", "data": []}', "invalid_request", 1),
        ('{"id": 1, "type": "ping", "pad": "' + "x" * 2000 + '"}', "message_too_large", None),
    ],
)
def test_bad_frames_get_codes(raw: str | bytes, code: str, request_id: int | None) -> None:
    error = refused(raw)
    assert error.code == code and error.request_id == request_id


def test_encoders() -> None:
    assert json.loads(encode_response(1, {"x": 2})) == {
        "type": "response",
        "id": 1,
        "data": {"x": 2},
    }
    assert json.loads(encode_event("slots", {"slots": [None]})) == {
        "type": "event",
        "event": "slots",
        "data": {"slots": [None]},
    }
    error = PodiumError(ErrorCode.NOT_JOINED, "send 'join' first")
    error.request_id = 9
    assert json.loads(encode_error(error)) == {
        "type": "error",
        "id": 9,
        "error": {"code": "not_joined", "message": "send 'join' first"},
    }
