"""The default model answers a question through ``tui-ft chat --prompt``, as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.e2e
def test_default_model_knows_the_capital_of_france(tmp_path, default_model_path):
    command = [sys.executable, "-m", "tui_ft", "--home", str(tmp_path), "chat", "default",
               "--prompt", "What is the capital of France?", "--max-new-tokens", "32", "--stats"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout, done.stdout
    assert len(done.stdout.strip().splitlines()) == 1  # the reply only; notices and stats go to stderr
    stats = re.search(r"(\d+) tokens, ([\d.]+) tokens/s, first token ([\d.]+) s .*stopped by (\w+)", done.stderr)
    assert stats and stats.group(4) == "eos", done.stderr  # it ended its answer by itself
