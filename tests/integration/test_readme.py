"""The README's run command, as written, in a fresh copy of the project."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import namespaces_missing, unshare_command

REPO = Path(__file__).resolve().parents[2]


def run_command() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"\*\*Run a dev server\*\*.*?```sh\n(.*?)\n```", readme, re.DOTALL)
    assert match, "the README's run command"
    return match.group(1)


def test_run_command_is_one_line_with_a_venv() -> None:
    command = run_command()
    assert "\n" not in command and command.startswith("python3 -m venv .venv && ")


@pytest.mark.slow
def test_run_command_works_in_a_fresh_copy(tmp_path: Path) -> None:
    """Its install steps as written (pip from the package index), then its ``podium serve
    --dev`` in a private network namespace (port 7880 there is free); stopped once it
    serves the demo page."""
    why = namespaces_missing()
    if why:
        pytest.skip(why)
    if sys.version_info < (3, 11) or shutil.which("python3") is None:
        pytest.skip("needs python3 >= 3.11")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in files:
        if (REPO / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tmp_path / name)
    *install, serve = run_command().split(" && ")
    done = subprocess.run(
        " && ".join(install), shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    check = (
        f"ip link set lo up && {{ {serve} > serve.log 2>&1 & }}; pid=$!; "
        "for i in $(seq 100); do grep -q 'mint a token' serve.log && break; sleep 0.2; done; "
        '.venv/bin/python -c "import urllib.request as u;'
        " print(u.urlopen('http://127.0.0.1:7880/').status)\"; kill $pid; wait $pid; cat serve.log"
    )
    served = subprocess.run(
        [*unshare_command(), "sh", "-c", check],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert served.stdout.startswith("200\n"), served.stdout + served.stderr
    assert "Podium dev server on ws://127.0.0.1:7880/rtc" in served.stdout
    assert "(event loop: uvloop)" in served.stdout
