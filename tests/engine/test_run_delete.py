"""Deleting a run: a live worker is stopped and waited for first, a link is refused, the CLI asks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_ft.engine.processes import WORKER_MODULE, start_time
from tui_ft.engine.runs import RunError, delete_run

TUI_FT = Path(sys.executable).with_name("tui-ft")
# A stand-in worker: its command line names the worker module and the run folder, as a real
# one's does, and on SIGTERM it writes its last checkpoint (a second's work) before it exits.
FAKE_WORKER = """
import pathlib, signal, sys, time
run_dir = pathlib.Path(sys.argv[2])
def stop(*_):
    time.sleep(1.0)
    (run_dir / "step-9").mkdir()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
(run_dir / "ready").touch()
while True:
    time.sleep(0.1)
"""


def make_run_dir(home: Path, name: str, **status) -> Path:
    run_dir = home / "checkpoints" / name
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"name": name, "method": "lora", "model": "default"}))
    (run_dir / "status.json").write_text(json.dumps({"state": "finished", "step": 3} | status))
    (run_dir / "step-3").mkdir()
    (run_dir / "step-3" / "adapter_model.safetensors").write_bytes(b"x" * 100)
    return run_dir


def wait_until_ready(run_dir: Path, worker: subprocess.Popen) -> None:
    """Until the stand-in runs its own code (a forked child shows its parent's command line first)."""
    deadline = time.monotonic() + 60
    while not (run_dir / "ready").exists():
        assert time.monotonic() < deadline and worker.poll() is None, "the stand-in worker never started"
        time.sleep(0.05)


def test_a_live_run_is_stopped_and_waited_for_before_its_folder_goes(tmp_path, reap):
    run_dir = make_run_dir(tmp_path, "live")
    worker = subprocess.Popen([sys.executable, "-c", FAKE_WORKER, WORKER_MODULE, str(run_dir)])
    reap(worker.pid)
    wait_until_ready(run_dir, worker)
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "pid": worker.pid,
                                                     "pid_started": start_time(worker.pid), "step": 8}))
    delete_run(run_dir)
    assert worker.wait(timeout=60) == 0  # it exited on its own, after its checkpoint
    assert not run_dir.exists()  # and nothing it wrote while stopping was left behind


def test_a_run_that_does_not_stop_in_time_is_not_deleted(tmp_path, reap):
    run_dir = make_run_dir(tmp_path, "stubborn")
    code = FAKE_WORKER.replace("signal.signal(signal.SIGTERM, stop)", "signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    worker = subprocess.Popen([sys.executable, "-c", code, WORKER_MODULE, str(run_dir)])
    reap(worker.pid)
    wait_until_ready(run_dir, worker)
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "pid": worker.pid,
                                                     "pid_started": start_time(worker.pid)}))
    with pytest.raises(RunError, match="did not stop within 1 s: nothing deleted"):
        delete_run(run_dir, wait_s=1.0)
    assert (run_dir / "step-3").is_dir()
    worker.kill()
    worker.wait(timeout=60)


def test_a_pid_that_is_not_the_runs_worker_is_neither_signalled_nor_waited_for(tmp_path):
    run_dir = make_run_dir(tmp_path, "stale", state="running", pid=os.getpid(), pid_started=start_time(os.getpid()))
    delete_run(run_dir, wait_s=600)  # this test process is alive but is no worker of the run: no wait
    assert not run_dir.exists()


def test_a_run_folder_that_is_a_link_is_refused(tmp_path):
    real = make_run_dir(tmp_path / "elsewhere", "real")
    (tmp_path / "home" / "checkpoints").mkdir(parents=True)
    link = tmp_path / "home" / "checkpoints" / "linked"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(RunError, match="is a link"):
        delete_run(link)
    assert (real / "step-3").is_dir() and link.is_symlink()


def test_cli_delete_asks_or_needs_yes_and_diff_lists_what_differs(tmp_path):
    home = tmp_path
    make_run_dir(home, "a")
    b = make_run_dir(home, "b")
    (b / "run.json").write_text(json.dumps({"name": "b", "method": "lora", "model": "HuggingFaceTB/SmolLM2-360M"}))
    run = lambda *args, **kw: subprocess.run([str(TUI_FT), "--home", str(home), *args], capture_output=True,  # noqa: E731
                                             text=True, timeout=120, **kw)
    diff = run("runs", "diff", "a", "b")
    assert diff.returncode == 0
    lines = [line.split() for line in diff.stdout.strip().splitlines()]
    assert lines == [["setting", "a", "b"], ["model", "default", "HuggingFaceTB/SmolLM2-360M"]]

    refused = run("runs", "delete", "a", stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and refused.stderr.strip() == "tui-ft: deleting a needs --yes (there is no terminal to ask on)"
    assert (home / "checkpoints" / "a").is_dir()
    done = run("runs", "delete", "a", "--yes")
    assert done.returncode == 0 and not (home / "checkpoints" / "a").exists()
    missing = run("runs", "delete", "a", "--yes")
    assert missing.returncode == 2 and "a: no such run" in missing.stderr
