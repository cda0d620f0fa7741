"""The README's and docs/client.md's Python examples, run as written (tests/netns.py)."""

from __future__ import annotations

import pytest

from tests.netns import namespaces_missing, run_scenario


@pytest.mark.slow
def test_client_examples_run_as_written_and_end() -> None:
    why = namespaces_missing()
    if why:
        pytest.skip(why)
    results = run_scenario("client_docs")
    for name, result in results.items():
        assert result["returncode"] == 0, (name, result["stderr"])
    assert results["listen"]["stdout"] == "slot 0: speaker-bot, 48000 Hz audio\n"
    assert results["readme"]["stdout"] == "hearing speaker-bot in slot 0: 960 samples\n"
    assert results["chat"]["stdout"].splitlines() == [
        "in demo with 1 on stage",  # the speaker bot had left: only chat-bot, a speaker
        "chat-bot: Hello from a bot",
        "refused: not_permitted",
    ]
