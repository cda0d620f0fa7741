"""The layers' import rules and the absence of import cycles, read from the source.

- ``sfu`` core imports no I/O; only ``sfu.rtc`` imports aiortc/aioice; ``sfu`` never
  imports ``signaling``.
- ``signaling.room`` and ``signaling.wire`` (pure) import no asyncio, aiohttp,
  aiortc/aioice, sockets or ``sfu.rtc``: only ``signaling.server`` does I/O (and the
  client SDK, which is its own edge).
- No cycle among the project's modules, ``TYPE_CHECKING`` imports included.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("sfu", "signaling", "benchmarks")
IO = {"asyncio", "aiortc", "aioice", "av", "socket", "uvloop", "aiohttp", "selectors"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))
}


def imports(name: str, path: Path) -> Iterator[str]:
    """Every module ``path`` imports, absolute or relative, with ``from x import y`` as x.y."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".")[
                    : len(name.split(".")) - node.level + (path.stem == "__init__")
                ]
                base = ".".join([*package, node.module] if node.module else package)
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def roots(path: Path) -> set[str]:
    return {module.split(".")[0] for module in imports(module_name(path), path)}


def under(prefix: str) -> list[Path]:
    return [p for name, p in MODULES.items() if name == prefix or name.startswith(prefix + ".")]


def project_imports(path: Path) -> set[str]:
    name = module_name(path)
    return {m for m in imports(name, path) if m in MODULES and m != name}


SFU_CORE = [p for p in under("sfu") if not module_name(p).startswith("sfu.rtc")]
PURE_SIGNALING = under("signaling.room") + under("signaling.wire")


def ids(path: Path) -> str:
    return module_name(path)


def test_core_modules_exist() -> None:
    names = {module_name(p).rsplit(".", 1)[-1] for p in SFU_CORE}
    assert {"room", "forwarder", "routing", "producer", "consumer", "slots"} <= names
    layers = {module_name(p).split(".")[1] for p in under("signaling") if "." in module_name(p)}
    assert {"room", "wire", "server", "client"} <= layers


@pytest.mark.parametrize("path", SFU_CORE, ids=ids)
def test_sfu_core_imports_no_io(path: Path) -> None:
    assert roots(path) & (IO | {"signaling"}) == set()


@pytest.mark.parametrize("path", under("sfu"), ids=ids)
def test_sfu_never_imports_signaling(path: Path) -> None:
    assert "signaling" not in roots(path)


@pytest.mark.parametrize("path", PURE_SIGNALING, ids=ids)
def test_pure_signaling_imports_no_io_and_no_media_adapter(path: Path) -> None:
    assert roots(path) & IO == set()
    assert not any(m.startswith("sfu.rtc") for m in project_imports(path))
    assert not any(m.startswith("signaling.server") for m in project_imports(path))


# Clients (the SDK, the benchmarks' load clients) are peers of their own and use aiortc.
NOT_MEDIA = [
    p
    for name, p in MODULES.items()
    if not name.startswith(("sfu.rtc", "signaling.client", "benchmarks"))
]


@pytest.mark.parametrize("path", NOT_MEDIA, ids=ids)
def test_only_the_media_adapter_imports_aiortc(path: Path) -> None:
    assert roots(path) & {"aiortc", "aioice"} == set()


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_find_cycles_finds_one() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    graph = {name: project_imports(path) for name, path in MODULES.items()}
    # A package's own __init__ importing its modules is not a cycle of the design.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    assert find_cycles(graph) == []
