"""End to end, in a real terminal: the default model answers the seed's question from the Chat pane.

The dashboard runs in a tmux session; keys go in with ``send-keys`` and the screen comes back
with ``capture-pane``, as a user over SSH would see it.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

TUI_FT = Path(sys.executable).with_name("tui-ft")
QUESTION = "What is the capital of France?"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def wait_for_screen(session: str, predicate, timeout: float) -> str:
    """Capture the pane until ``predicate(screen)`` holds; fail with the last screen after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux("capture-pane", "-p", "-t", session)
        if predicate(screen):
            return screen
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s; the screen was:\n{screen}")
        time.sleep(0.5)


def test_default_model_answers_paris_in_the_chat_pane(workspace, default_model_path):
    session = f"tui_ft_chat_e2e_{os.getpid()}"
    command = f"{TUI_FT} --home {workspace}"
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
    try:
        wait_for_screen(session, lambda s: "Datasets" in s, 30)
        tmux("send-keys", "-t", session, "4")
        wait_for_screen(session, lambda s: "default ready" in s, 60)
        tmux("send-keys", "-t", session, "-l", QUESTION)
        tmux("send-keys", "-t", session, "Enter")
        screen = wait_for_screen(
            session, lambda s: QUESTION in s and "Paris" in s.split(QUESTION, 1)[1] and "tokens/s" in s, 60
        )
        reply = screen.split(QUESTION, 1)[1]
        assert "Paris" in reply
        assert "first token" in screen  # the status line reports the speed of the reply
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
