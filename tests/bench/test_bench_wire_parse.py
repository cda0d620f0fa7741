"""The wire parse benchmark runs and measures every candidate it finds."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.wire_parse import main


def test_wire_parse_benchmark_reports_each_frame(tmp_path: Path) -> None:
    out = tmp_path / "wire-parse.json"
    result = main(["--count", "50", "--runs", "2", "--json", str(out)])
    assert json.loads(out.read_text()) == result
    figures = result["cpu_us_per_message"]
    for name in ("handwritten", "pydantic", "pydantic_json"):
        assert set(figures[name]) == {"join", "offer", "send_chat"}
        assert all(cost > 0 for cost in figures[name].values())
    assert result["frame_bytes"]["offer"] > 3000
    assert "--count 50" in result["command"]
