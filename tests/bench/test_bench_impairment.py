"""The impairment benchmark runs end to end and reports what issue #15 asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_one_cycle_at_10_percent_loss(tmp_path: Path) -> None:
    out = tmp_path / "impairment.json"
    command = [sys.executable, "-m", "benchmarks.impairment", "--loss", "10", "--burst", "1"]
    command += ["--delay", "10", "--jitter", "5", "--seconds", "6", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["command"].startswith("python -m benchmarks.impairment --loss 10")
    assert 0.03 < result["loss_ratio"] < 0.2  # ~1 200 packets, 10 % dropped
    assert result["unrecovered_ratio_red"] < result["unrecovered_ratio_plain"]
    for key in ("onset_delay_ms_p50", "onset_delay_ms_p95", "server_cpu_us_per_packet"):
        assert isinstance(result[key], float)
    assert 0.0 <= result["short_sound_delivery"] <= 1.0
