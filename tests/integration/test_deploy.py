"""The container and compose set-up, checked by reading them (no Docker daemon in CI) and
against a live server where they name its metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from signaling.server.server import PodiumServer
from tests.conftest import make_config

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "podium.json"


def queries(node: Any) -> Iterator[str]:
    """Every PromQL ``expr`` in a Grafana dashboard, rows' nested panels included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


async def exported_metrics() -> set[str]:
    """Sample names a fresh server's ``/metrics`` exports (``_bucket``, ``_total`` ...)."""
    server = PodiumServer(make_config())
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            text = await response.text()
    finally:
        await server.stop()
    return {re.split(r"[{ ]", line)[0] for line in text.splitlines() if line[:1].isalpha()}


async def test_every_dashboard_query_names_metrics_that_podium_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(queries(dashboard))
    exported = await exported_metrics()
    assert len(exprs) >= 20
    used: set[str] = set()
    for expr in exprs:
        names = set(re.findall(r"\bpodium_[a-z0-9_]+", expr))
        assert names, f"{expr!r} names no Podium metric"
        assert names <= exported, f"{expr!r}: {names - exported} not in /metrics"
        used |= names
        if "histogram_quantile" in expr:
            assert all(n.endswith("_bucket") for n in names), expr
    # Every metric family is on the dashboard somewhere.
    families = {re.sub(r"_(bucket|count|sum|created)$", "", name) for name in exported}
    unused = {f for f in families if not any(u.startswith(f) for u in used)}
    assert unused <= {"podium_process_start_time_seconds", "podium_process_virtual_memory_bytes"}


def test_grafana_provisioning_points_at_the_dashboard_and_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = (REPO / "deploy/grafana/provisioning/datasources/prometheus.yaml").read_text()
    uid = re.search(r"uid: (\S+)", datasource)
    assert uid and "url: http://prometheus:9090" in datasource
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid.group(1), panel["title"]
    provider = (REPO / "deploy/grafana/provisioning/dashboards/podium.yaml").read_text()
    compose = (REPO / "compose.yaml").read_text()
    path = re.search(r"path: (\S+)", provider)
    assert path and f"./deploy/grafana/dashboards:{path.group(1)}:ro" in compose


def test_image_and_compose_agree_on_ports_env_and_volume() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    compose = (REPO / "compose.yaml").read_text()
    prometheus = (REPO / "deploy/prometheus.yml").read_text()
    metrics_port = re.search(r"PODIUM_METRICS_PORT=(\d+)", dockerfile)
    assert metrics_port
    assert f"http://127.0.0.1:{metrics_port.group(1)}/healthz" in dockerfile  # HEALTHCHECK
    assert f'"podium:{metrics_port.group(1)}"' in prometheus
    recordings = re.search(r"PODIUM_RECORDINGS_DIR=(\S+)", dockerfile)
    assert recordings and f"VOLUME {recordings.group(1)}" in dockerfile
    assert f"recordings:{recordings.group(1)}" in compose
    assert re.search(r"^USER podium$", dockerfile, re.MULTILINE)
    # Dependencies are installed before the source is copied (their own cached layer).
    assert dockerfile.index("pip install --no-cache-dir -r") < dockerfile.index("COPY sfu")
    # What the image and compose file pass through the environment, the CLI reads.
    cli = (REPO / "signaling" / "server" / "cli.py").read_text()
    for name in set(re.findall(r"\b(PODIUM_[A-Z_]+)", dockerfile + compose)):
        assert f'"{name}"' in cli, name
