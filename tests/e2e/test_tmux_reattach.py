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
from collections import Counter
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


def type_text(session: str, text: str) -> None:
    tmux("send-keys", "-t", session, "-l", text)


def wait_for_screen(session: str, predicate, timeout: float, what: str = "") -> str:
    """Capture the pane until ``predicate(screen)`` holds; fail with the last screen after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux("capture-pane", "-p", "-t", session)
        if predicate(screen):
            return screen
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or 'the screen'}; the screen was:\n{screen}")
        time.sleep(0.2)


def field_shows(label: str, value: str):
    """A predicate: the form row ``label`` shows ``value``."""
    return lambda screen: re.search(rf"{re.escape(label)}\s+{re.escape(value)}", screen) is not None


# --- what a person sees of the focus: the highlighted field ---------------------------------------

SGR = re.compile(r"\x1b\[([0-9;]*)m")


def cell_backgrounds(line: str) -> tuple[str, list]:
    """A captured line (``capture-pane -e``) as its plain text and the background of each character."""
    text, backgrounds, background, position = [], [], None, 0
    for match in SGR.finditer(line + "\x1b[m"):
        chunk = line[position:match.start()]
        text.append(chunk)
        backgrounds += [background] * len(chunk)
        position = match.end()
        codes = [int(code) if code else 0 for code in match.group(1).split(";")]
        index = 0
        while index < len(codes):
            code = codes[index]
            if code in (38, 48):  # extended colours: 5;N or 2;R;G;B
                width = 3 if codes[index + 1:index + 2] == [5] else 5
                if code == 48:
                    background = tuple(codes[index:index + width])
                index += width
                continue
            if code in (0, 49):
                background = None
            elif 40 <= code <= 47 or 100 <= code <= 107:
                background = code
            index += 1
    return "".join(text), backgrounds


def form_fields(session: str) -> dict[str, object]:
    """Each Train form row on screen (a right-aligned label, then its field) and the field's background.

    A field starts where the background changes from the screen's; the form's fields all start
    in one column, which tells them from the title, the button and the footer.
    """
    rows = []
    for line in tmux("capture-pane", "-p", "-e", "-t", session).splitlines():
        text, backgrounds = cell_backgrounds(line)
        start = next((i for i, background in enumerate(backgrounds) if background != backgrounds[0]), None)
        if start and text[:start].strip():
            rows.append((start, text[:start].strip(), backgrounds[start]))
    column = Counter(start for start, _, _ in rows).most_common(1)[0][0] if rows else None
    return {label: background for start, label, background in rows if start == column}


def focused_field(session: str) -> str | None:
    """The form row whose field is drawn unlike the others: the one with the focus."""
    fields = form_fields(session)
    counts = Counter(fields.values())
    odd = [label for label, background in fields.items() if counts[background] == 1]
    return odd[0] if len(odd) == 1 and len(fields) > 3 else None


def tab_to(session: str, label: str, timeout: float = 60) -> None:
    """Press Tab until the field ``label`` has the focus, each press only once the last one showed.

    Tab moves the focus only once the focused input has let the key bubble up to the screen; a
    key sent before the screen shows that lands in the old field, as it would for a person who
    typed without looking.
    """
    # The Train pane focuses nothing on arrival (a key must not land in a field the user cannot
    # see): once the form is drawn, the first Tab enters it at the top.
    wait_for_screen(session, lambda _: len(form_fields(session)) > 3, timeout, "the form")
    if focused_field(session) is None:
        keys(session, "Tab")
    current = wait_for_screen(session, lambda _: focused_field(session), timeout, "a focused field") and focused_field(session)
    for _ in range(40):
        if current == label:
            return
        keys(session, "Tab")
        deadline = time.monotonic() + timeout
        while (now := focused_field(session)) in (current, None):
            if time.monotonic() > deadline:
                pytest.fail(f"Tab did not move the focus from {current!r} in {timeout} s")
            time.sleep(0.1)
        current = now
    pytest.fail(f"no field {label!r} in the form: {list(form_fields(session))}")


def list_rows(session: str, label: str) -> list[tuple[str, object]]:
    """The open list under the field ``label``: each option's text and background, top to bottom."""
    lines = [cell_backgrounds(line) for line in tmux("capture-pane", "-p", "-e", "-t", session).splitlines()]
    row = next(i for i, (text, _) in enumerate(lines) if re.match(rf"\s*{re.escape(label)} ", text))
    column = lines[row][0].index(label) + len(label) + 1
    rows = []
    for text, backgrounds in lines[row + 1:]:
        if column >= len(backgrounds) or backgrounds[column] == backgrounds[0] or not text[column:].strip():
            break
        rows.append((text[column:].strip(), backgrounds[column]))
    return rows


def highlight_moved(session: str, label: str, highlight, before: list[str]):
    """A predicate: the highlighted row of ``label``'s open list is no longer ``before``."""
    return lambda _: [text for text, background in list_rows(session, label) if background == highlight] != before


def pick_option(session: str, label: str, option: str, timeout: float = 60) -> None:
    """Open the list of the focused field ``label``, move to ``option`` and choose it, watching each step.

    The option highlighted when the list opens is the field's current value; its background is
    the highlight, which Down moves one row at a time.
    """
    shown = wait_for_screen(session, lambda s: re.search(rf"{re.escape(label)} (.*?)\s+▼", s), timeout, f"the {label} field")
    current = re.search(rf"{re.escape(label)} (.*?)\s+▼", shown).group(1).strip()
    keys(session, "Enter")
    wait_for_screen(session, lambda s: re.search(rf"{re.escape(label)} .*▲", s), timeout, f"the {label} list to open")
    rows = wait_for_screen(session, lambda _: len(list_rows(session, label)) > 1, timeout, "the options") and list_rows(session, label)
    highlight = dict(rows)[current]
    for _ in range(len(rows)):
        rows = list_rows(session, label)
        if any(text.startswith(option) and background == highlight for text, background in rows):
            break  # a file's option reads "name · 8 examples"
        before = [text for text, background in rows if background == highlight]
        keys(session, "Down")
        wait_for_screen(session, highlight_moved(session, label, highlight, before), timeout, "the list's highlight to move")
    keys(session, "Enter")
    wait_for_screen(session, field_shows(label, option), timeout, f"{label} to show {option}")


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
        wait_for_screen(first, lambda s: "example 1/" in s, 120, "the first example")
        keys(first, "2")
        wait_for_screen(first, lambda s: "New run" in s and "Model" in s, 60, "the Train pane")
        tab_to(first, "or model folder")
        type_text(first, str(tiny_model_dir))
        wait_for_screen(first, field_shows("or model folder", str(tiny_model_dir)), 60)
        tab_to(first, "Dataset")
        pick_option(first, "Dataset", "seed_instructions.jsonl")
        tab_to(first, "Max steps")
        type_text(first, "400")
        wait_for_screen(first, field_shows("Max steps", "400"), 60)
        tab_to(first, "Run name")
        type_text(first, RUN)
        wait_for_screen(first, field_shows("Run name", RUN), 60)
        keys(first, "C-s")
        screen = wait_for_screen(first, lambda s: RUN in s and "running" in s and "step" in s, 180, "the Runs pane")
        assert "Loss" in screen  # the Runs pane shows the new run with its plots

        status = wait_until(lambda: (s := read_status(run_dir))["step"] >= 1 and s, 180, "the first step")
        pid, step = status["pid"], status["step"]
        tmux("kill-session", "-t", first)  # the SSH connection drops
        later = wait_until(lambda: (s := read_status(run_dir))["step"] > step + 2 and s, 180, "training to go on")
        assert later["state"] == "running" and later["pid"] == pid and pid_alive(pid)

        tmux("new-session", "-d", "-s", second, "-x", "100", "-y", "30", f"{TUI_FT} --home {home}")
        wait_for_screen(second, lambda s: "Datasets" in s, 120, "the dashboard")
        keys(second, "3")
        screen = wait_for_screen(second, lambda s: RUN in s and "running" in s and "train" in s, 120, "the run")
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
