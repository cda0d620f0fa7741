"""The cluster benchmark runs end to end: delivery across nodes, costs, and failover."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_small_cluster_benchmark_measures_an_edge_failover(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    command = [sys.executable, "-m", "benchmarks.cluster", "--nodes", "3", "--listeners", "4"]
    command += ["--seconds", "2", "--warmup", "1", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["nodes"] == 3 and result["listeners"] == 4
    assert result["delivered_ratio"] >= 0.95  # a 2 s window: the first packets weigh
    assert result["origin_cpu_ms_per_s"] > 0 and result["edge_cpu_us_per_packet"] > 0
    assert result["relay_added_latency_ms_p99"] is not None
    # Node 1's two listeners resumed through another node and heard the speaker again.
    assert result["failover_s"] is not None and result["failover_s"] < 10
