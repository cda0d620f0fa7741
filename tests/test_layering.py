"""The sans-I/O core must import no I/O: no asyncio, aiortc, aioice, sockets or signaling."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SFU = Path(__file__).resolve().parent.parent / "sfu"
FORBIDDEN = {"asyncio", "aiortc", "aioice", "av", "socket", "uvloop", "aiohttp", "signaling"}
CORE = sorted(p for p in SFU.rglob("*.py") if "rtc" not in p.relative_to(SFU).parts)


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_modules_exist() -> None:
    names = {p.stem for p in CORE}
    assert {"room", "forwarder", "routing", "producer", "consumer", "slots"} <= names


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(SFU)))
def test_core_module_imports_no_io(path: Path) -> None:
    assert imported_roots(path) & FORBIDDEN == set()


def test_sfu_never_imports_signaling() -> None:
    for path in SFU.rglob("*.py"):
        assert "signaling" not in imported_roots(path), path
