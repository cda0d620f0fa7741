"""Parse cost per WebSocket request: one frame's bytes to typed request data.

Run from the repository root::

    python -m benchmarks.wire_parse --json bench-results/wire-parse.json

Four ways to go from a frame to a typed request, each on the same three frames (a
``join`` with a real access token, an ``offer`` with a 3 KB SDP, a ``send_chat``):

- ``handwritten``: the envelope by ``parse_request``, then isinstance checks per field
  into a frozen dataclass (what ``signaling.wire.protocol.field`` did before the models);
- ``pydantic``: the envelope by ``parse_request``, then ``messages.parse_data`` (what the
  server does: strict pydantic models);
- ``pydantic_json``: the whole frame by pydantic's own JSON parser, as a union of frame
  models tagged by ``type`` (what moving the envelope into the models would cost);
- ``msgspec``: the whole frame decoded by msgspec into a Struct envelope, then
  ``msgspec.convert`` of the data into a Struct (only when msgspec is importable: it is
  not a dependency).

Figures are CPU microseconds (``time.process_time``) per message, the best of ``--runs``
runs of ``--count`` messages each, candidates interleaved within a run: the machine is
shared, and the minimum is the least disturbed. A join costs the server ~4.5 ms of CPU
(docs/benchmarks.md), so the parse is a rounding error for every candidate; the choice
rests on what else each gives (docs/protocol.md, Versioning).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import VERSION as PYDANTIC_VERSION
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
from signaling.server.session import HANDLER_TYPES
from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.messages import Join, Offer, SendChat, WireRequest, parse_data
from signaling.wire.protocol import parse_request
from signaling.wire.tokens import mint_token

Parser = Callable[[bytes], object]


def frames() -> dict[str, bytes]:
    token = mint_token(DEV_API_KEY, DEV_API_SECRET, identity="ada", room="town-hall", role="host")
    media = "\r\n".join(
        [
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "c=IN IP4 0.0.0.0",
            "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            "a=ice-ufrag:abcd",
            "a=ice-pwd:0123456789abcdef01234567",
            "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
            "a=setup:actpass",
        ]
    )
    sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    while len(sdp) < 3000:  # an uplink and slots, as a client offers them
        sdp += media + f"\r\na=mid:{sdp.count('m=audio')}\r\na=recvonly\r\n"
    chat = {"text": "Great point about the roadmap, thanks!"}
    return {
        "join": json.dumps({"id": 1, "type": "join", "data": {"token": token}}).encode(),
        "offer": json.dumps({"id": 2, "type": "offer", "data": {"sdp": sdp}}).encode(),
        "send_chat": json.dumps({"id": 3, "type": "send_chat", "data": chat}).encode(),
    }


# -- handwritten: isinstance checks into frozen dataclasses -------------------------
def _field(data: Mapping[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise PodiumError(ErrorCode.INVALID_REQUEST, f"field {name!r} must be a {kind.__name__}")
    return value


@dataclass(frozen=True)
class JoinData:
    token: str
    room: str | None


@dataclass(frozen=True)
class OfferData:
    sdp: str


@dataclass(frozen=True)
class ChatData:
    text: str


HANDWRITTEN: dict[str, Callable[[Mapping[str, Any]], object]] = {
    "join": lambda d: JoinData(_field(d, "token", str), _field(d, "room", str, required=False)),
    "offer": lambda d: OfferData(_field(d, "sdp", str)),
    "send_chat": lambda d: ChatData(_field(d, "text", str)),
}


def handwritten(raw: bytes) -> object:
    request = parse_request(raw, HANDLER_TYPES)
    return HANDWRITTEN[request.type](request.data)


# -- pydantic: what the server does --------------------------------------------------
MODELS: dict[str, type[WireRequest]] = {"join": Join, "offer": Offer, "send_chat": SendChat}


def pydantic(raw: bytes) -> object:
    request = parse_request(raw, HANDLER_TYPES)
    return parse_data(MODELS[request.type], request.data)


# -- pydantic, whole frame: its JSON parser and a union tagged by "type" ------------
class _Frame(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)
    id: int | str


class JoinFrame(_Frame):
    type: Literal["join"]
    data: Join


class OfferFrame(_Frame):
    type: Literal["offer"]
    data: Offer


class ChatFrame(_Frame):
    type: Literal["send_chat"]
    data: SendChat


FRAME: TypeAdapter[JoinFrame | OfferFrame | ChatFrame] = TypeAdapter(
    Annotated[JoinFrame | OfferFrame | ChatFrame, Field(discriminator="type")]
)


def pydantic_json(raw: bytes) -> object:
    return FRAME.validate_json(raw)


# -- msgspec (optional) ------------------------------------------------------------
def msgspec_parser() -> Parser | None:
    try:
        msgspec = importlib.import_module("msgspec")
    except ImportError:
        return None
    structs = {
        "join": msgspec.defstruct("JoinStruct", [("token", str), ("room", str | None, None)]),
        "offer": msgspec.defstruct("OfferStruct", [("sdp", str)]),
        "send_chat": msgspec.defstruct("ChatStruct", [("text", str)]),
    }
    envelope = msgspec.defstruct(
        "Envelope", [("id", int | str), ("type", str), ("data", dict[str, Any], {})]
    )
    decoder = msgspec.json.Decoder(envelope)
    convert = msgspec.convert

    def parse(raw: bytes) -> object:
        frame = decoder.decode(raw)
        return convert(frame.data, structs[frame.type])

    return parse


def measure(parse: Parser, raw: bytes, count: int) -> float:
    """CPU seconds per parse over ``count`` parses."""
    start = time.process_time()
    for _ in range(count):
        parse(raw)
    return (time.process_time() - start) / count


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args(argv)
    candidates: dict[str, Parser | None] = {
        "handwritten": handwritten,
        "pydantic": pydantic,
        "pydantic_json": pydantic_json,
        "msgspec": msgspec_parser(),
    }
    samples = frames()
    present = {name: parse for name, parse in candidates.items() if parse is not None}
    for parse in present.values():
        for raw in samples.values():
            parse(raw)  # each must accept every frame
    # Runs outermost, candidates interleaved: load from others on the shared machine
    # falls on every candidate alike, and the best run of each is the least disturbed.
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.runs):
        for name, parse in present.items():
            for kind, raw in samples.items():
                cost = measure(parse, raw, args.count)
                best[name, kind] = min(best.get((name, kind), cost), cost)
    figures: dict[str, dict[str, float] | None] = {
        name: (
            {kind: round(best[name, kind] * 1e6, 2) for kind in samples}
            if name in present
            else None
        )
        for name in candidates
    }
    msgspec_version = None
    if figures["msgspec"] is not None:
        msgspec_version = importlib.import_module("msgspec").__version__

    result = {
        "benchmark": "wire_parse",
        "unit": "CPU microseconds per message, best of runs",
        "frame_bytes": {kind: len(raw) for kind, raw in samples.items()},
        "cpu_us_per_message": figures,
        "count": args.count,
        "runs": args.runs,
        "command": shlex.join(
            [sys.executable, "-m", "benchmarks.wire_parse", *(argv or sys.argv[1:])]
        ),
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "pydantic": PYDANTIC_VERSION,
            "msgspec": msgspec_version,
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
