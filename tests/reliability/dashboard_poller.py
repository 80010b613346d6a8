"""A headless stand-in for a dashboard: poll a workspace the way the Runs pane does, checking every file read.

Run as a script by ``test_concurrent_runs.py``: ``python dashboard_poller.py HOME OUT.json RUNS TIMEOUT``.
It polls until the RUNS runs of HOME are all final (or TIMEOUT seconds pass), then writes what
it saw to OUT.json. Besides the pane's own readers (``run_rows``, one ``RunHistory`` a run) it
reads ``status.json`` and ``metrics.jsonl`` raw: a status that does not parse, or a complete
metrics line that does not parse, is a corrupted file (only a last line still being written may
be torn).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import orjson

from tui_ft.engine.runs.state import FINAL_STATES
from tui_ft.views.run_monitor import RunHistory, run_rows


def check_files(run_dir: Path, seen: dict) -> None:
    """Parse ``status.json`` and every complete line of ``metrics.jsonl`` as read right now."""
    seen["status_reads"] += 1
    try:
        if not isinstance(orjson.loads((run_dir / "status.json").read_bytes()), dict):
            seen["bad_status"] += 1
    except orjson.JSONDecodeError:
        seen["bad_status"] += 1
    data = (run_dir / "metrics.jsonl").read_bytes() if (run_dir / "metrics.jsonl").exists() else b""
    lines = data.split(b"\n")
    if lines[-1]:
        seen["torn_tails"] += 1  # a line being written: readers wait for its newline
    for line in lines[:-1]:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            seen["bad_metrics_lines"] += 1


def poll(home: Path, runs: int, timeout: float) -> dict:
    seen = {"polls": 0, "status_reads": 0, "bad_status": 0, "bad_metrics_lines": 0, "torn_tails": 0,
            "exceptions": [], "states": {}, "final": {}, "loss_points": {}}
    histories: dict[str, RunHistory] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rows = run_rows(home)
            for row in rows:
                name = row.info.name
                seen["states"].setdefault(name, set()).add(row.info.state)
                histories.setdefault(name, RunHistory(row.info.path)).update()
                check_files(row.info.path, seen)
            seen["polls"] += 1
            if len(rows) >= runs and all(row.info.state in FINAL_STATES for row in rows):
                seen["final"] = {row.info.name: row.info.state for row in rows}
                break
        except Exception:  # noqa: BLE001 - reported to the test, which fails on any
            seen["exceptions"].append(traceback.format_exc())
        time.sleep(0.02)
    for name, history in histories.items():
        history.update()
        seen["loss_points"][name] = len(history.series.get(("train", "loss"), []))
    seen["states"] = {name: sorted(states) for name, states in seen["states"].items()}
    return seen


if __name__ == "__main__":
    home, out, runs, timeout = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    Path(out).write_text(json.dumps(poll(home, runs, timeout)))
