"""Every error code lives in ``ErrorCode``: the protocol document and the SDKs agree with it."""

from __future__ import annotations

import re
from pathlib import Path

from signaling.server.metrics import ERROR_CODES
from signaling.wire.errors import ErrorCode

ROOT = Path(__file__).resolve().parents[2]
CODES = {str(code) for code in ErrorCode}


def documented_codes() -> list[str]:
    """The first column of docs/protocol.md's "## Errors" table."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)


def test_the_protocol_document_lists_exactly_the_enums_codes() -> None:
    listed = documented_codes()
    assert len(listed) == len(set(listed)), "a code listed twice"
    assert set(listed) == CODES


def test_metrics_label_exactly_the_enums_codes() -> None:
    assert set(ERROR_CODES) == CODES


def test_the_javascript_sdk_names_no_code_outside_the_enum() -> None:
    """podium.js passes codes through (PodiumError.code); any it compares against must exist."""
    source = (ROOT / "signaling" / "static" / "podium.js").read_text()
    compared = set(re.findall(r"code\s*[!=]==?\s*['\"]([a-z_]+)['\"]", source))
    assert compared <= CODES, compared - CODES


def test_the_api_document_names_only_the_enums_codes() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    table = text.split("| status | codes |", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", table)) - {"field", "body", "null", "Allow"}
    assert named and named <= CODES, named - CODES
