"""The signaling wire format, sans I/O: parse requests, encode replies and events.

Request  ``{"id": 7, "type": "offer", "data": {...}}``
Response ``{"type": "response", "id": 7, "data": {...}}``
Error    ``{"type": "error", "id": 7 | null, "error": {"code": ..., "message": ...}}``
Event    ``{"type": "event", "event": "slots", "data": {...}}``
See docs/protocol.md for every message; ``signaling.wire.messages`` types each
request's ``data`` and every response and event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from signaling.wire.errors import ErrorCode, PodiumError

MAX_MESSAGE_BYTES = 64 * 1024
RequestId = int | str


@dataclass(frozen=True)
class Request:
    id: RequestId
    type: str
    data: Mapping[str, Any]


def parse_request(
    raw: str | bytes, known_types: frozenset[str], max_bytes: int = MAX_MESSAGE_BYTES
) -> Request:
    """Validate one inbound frame; raise PodiumError (with the request id when known)."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise PodiumError(
            ErrorCode.MESSAGE_TOO_LARGE, f"message of {size} bytes exceeds {max_bytes}"
        )
    try:
        message = json.loads(raw)
    except RecursionError as exc:  # nested deeper than the decoder's stack allows
        raise PodiumError(ErrorCode.MALFORMED_JSON, "JSON nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise PodiumError(ErrorCode.MALFORMED_JSON, f"not valid JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise PodiumError(ErrorCode.INVALID_REQUEST, "a request must be a JSON object")
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        raise PodiumError(ErrorCode.INVALID_REQUEST, "request 'id' must be a string or an integer")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise _refused(ErrorCode.INVALID_REQUEST, "request 'type' must be a string", request_id)
    if kind not in known_types:
        raise _refused(ErrorCode.UNKNOWN_TYPE, f"unknown request type {kind!r}", request_id)
    data = message.get("data", {})
    if not isinstance(data, dict):
        raise _refused(ErrorCode.INVALID_REQUEST, "request 'data' must be an object", request_id)
    return Request(request_id, kind, data)


def _refused(code: str, message: str, request_id: RequestId) -> PodiumError:
    error = PodiumError(code, message)
    error.request_id = request_id
    return error


def encode_response(request_id: RequestId, data: Mapping[str, Any]) -> str:
    return json.dumps({"type": "response", "id": request_id, "data": data})


def encode_error(error: PodiumError) -> str:
    return json.dumps({"type": "error", "id": error.request_id, "error": error.to_dict()})


def encode_event(name: str, data: Mapping[str, Any]) -> str:
    return json.dumps({"type": "event", "event": name, "data": data})
