"""End to end, in a real terminal: start a run by keyboard, drop the session, training goes on, reattach.

The dashboard runs in a tmux session; keys go in with ``send-keys`` and the screen comes back
with ``capture-pane``. Killing the session is what an SSH drop does to the dashboard; the
run's worker lives in its own session and must not notice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_ft.engine.runs import read_status, stop_run

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

TUI_FT = Path(sys.executable).with_name("tui-ft")
REPO = Path(__file__).resolve().parents[2]
RUN = "tmux-run"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def keys(session: str, *names: str) -> None:
    tmux("send-keys", "-t", session, *names)


def tab(session: str, count: int) -> None:
    """Move the focus ``count`` fields on, one key at a time.

    Tab moves the focus only once the focused input has let the key bubble up to the screen;
    text typed before that lands in the old field, so each move gets time to settle.
    """
    for _ in range(count):
        keys(session, "Tab")
        time.sleep(0.3)
    time.sleep(0.7)


def type_text(session: str, text: str) -> None:
    tmux("send-keys", "-t", session, "-l", text)


def wait_for_screen(session: str, predicate, timeout: float) -> str:
    """Capture the pane until ``predicate(screen)`` holds; fail with the last screen after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux("capture-pane", "-p", "-t", session)
        if predicate(screen):
            return screen
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s; the screen was:\n{screen}")
        time.sleep(0.3)


def field_shows(label: str, value: str):
    """A predicate: the form row ``label`` shows ``value``."""
    return lambda screen: re.search(rf"{re.escape(label)}\s+{re.escape(value)}", screen) is not None


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def home(tmp_path) -> Path:
    (tmp_path / "datasets").mkdir()
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(REPO / "datasets" / "seed_instructions.jsonl", tmp_path / "datasets")
    return tmp_path


def test_run_started_by_keyboard_survives_a_dropped_session_and_reattaches(home, tiny_model_dir):
    first, second = f"tui_ft_train_e2e_{os.getpid()}", f"tui_ft_reattach_e2e_{os.getpid()}"
    run_dir = home / "checkpoints" / RUN
    tmux("new-session", "-d", "-s", first, "-x", "100", "-y", "30", f"{TUI_FT} --home {home}")
    try:
        # Let the Datasets pane finish loading the tokenizer: keys then move at typing speed.
        wait_for_screen(first, lambda s: "example 1/" in s, 60)
        keys(first, "2")
        wait_for_screen(first, lambda s: "New run" in s and "Model" in s, 30)
        tab(first, 1)  # the model list has the focus; next is the model folder
        type_text(first, str(tiny_model_dir))
        wait_for_screen(first, field_shows("or model folder", str(tiny_model_dir)), 15)
        tab(first, 1)
        keys(first, "Enter")  # open the dataset list and pick by typing its name
        type_text(first, "seed_instructions")
        keys(first, "Enter")
        wait_for_screen(first, field_shows("Dataset", "seed_instructions.jsonl"), 15)
        # eval dataset, method, LoRA rank, alpha, dropout, targets, epochs, then max steps
        tab(first, 8)
        type_text(first, "400")
        wait_for_screen(first, field_shows("Max steps", "400"), 15)
        # learning rate, batch size, grad accumulation, max length, eval every, save every, seed,
        # template, device, processes, then run name
        tab(first, 11)
        type_text(first, RUN)
        wait_for_screen(first, field_shows("Run name", RUN), 15)
        keys(first, "C-s")
        screen = wait_for_screen(first, lambda s: RUN in s and "running" in s and "step" in s, 120)
        assert "Loss" in screen  # the Runs pane shows the new run with its plots

        status = wait_until(lambda: (s := read_status(run_dir))["step"] >= 1 and s, 60, "the first step")
        pid, step = status["pid"], status["step"]
        tmux("kill-session", "-t", first)  # the SSH connection drops
        later = wait_until(lambda: (s := read_status(run_dir))["step"] > step + 2 and s, 60, "training to go on")
        assert later["state"] == "running" and later["pid"] == pid and pid_alive(pid)

        tmux("new-session", "-d", "-s", second, "-x", "100", "-y", "30", f"{TUI_FT} --home {home}")
        wait_for_screen(second, lambda s: "Datasets" in s, 30)
        keys(second, "3")
        screen = wait_for_screen(second, lambda s: RUN in s and "running" in s and "train" in s, 30)
        row = next(line for line in screen.splitlines() if RUN in line and "running" in line)
        shown_step = int(re.search(r"(\d+)/400", row).group(1))
        assert shown_step > step  # live: the step the worker reached after the drop
        assert "lora" in row
    finally:
        for session in (first, second):
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        if run_dir.exists():
            status = read_status(run_dir)
            if status["state"] in ("queued", "running"):
                stop_run(run_dir)
                pid = status.get("pid")
                if pid:
                    try:
                        wait_until(lambda: not pid_alive(pid), 30, "the worker to stop")
                    except pytest.fail.Exception:
                        os.kill(pid, 9)
