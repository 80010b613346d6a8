"""The detached worker as a real process: it outlives its parent, stops with a checkpoint, resumes, dies.

One long run on the tiny model goes through the whole life cycle, so the worker's start-up
cost (importing torch and transformers) is paid twice, not once per check.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil

from tui_ft.engine.runs import create_run, list_checkpoints, list_runs, read_metrics, read_status, resume_run, stop_run
from tui_ft.engine.runs.config import TrainConfig

from polling import wait_for

LAUNCH = "import sys; from tui_ft.engine.runs import launch_run; print(launch_run(sys.argv[1]))"


def test_worker_outlives_its_parent_stops_with_a_checkpoint_resumes_and_reads_died(workspace, tiny_model_dir, monkeypatch,
                                                                                   reap):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the tiny model needs one thread; the CPU is shared
    config = TrainConfig(model=str(tiny_model_dir), dataset="datasets/seed_instructions.jsonl", method="lora",
                         max_steps=100_000, batch_size=2, save_every=0, eval_split=0.0, name="life")
    run_dir = create_run(config, workspace)

    # A parent that starts the worker and exits at once, as the dashboard or a shell may.
    parent = subprocess.run([sys.executable, "-c", LAUNCH, str(run_dir)], capture_output=True, text=True, timeout=60)
    assert parent.returncode == 0, parent.stderr
    pid = int(parent.stdout)
    reap(pid)
    assert os.getsid(pid) == pid != os.getsid(0)  # its own session: no terminal signal reaches it
    status = wait_for(lambda: (s := read_status(run_dir))["step"] >= 2 and s, "training steps after the parent exited")
    assert status["state"] == "running" and status["pid"] == pid and status["total_steps"] == 100_000
    # It yields the CPU to the dashboard: 5 nicer than the process that launched it.
    assert psutil.Process(pid).nice() == min(19, os.nice(0) + 5)

    stop_run(run_dir)
    status = wait_for(lambda: (s := read_status(run_dir))["state"] in ("stopped", "failed", "died") and s, "the stop")
    assert status["state"] == "stopped", status
    stopped_at = status["step"]
    assert [p.name for p in list_checkpoints(run_dir)] == [f"step-{stopped_at}"]
    assert read_metrics(run_dir)[-1]["event"] == "stopped"
    assert "received SIGTERM" in (run_dir / "worker.log").read_text()

    new_pid = resume_run(run_dir)
    reap(new_pid)
    wait_for(lambda: read_status(run_dir)["step"] >= stopped_at + 2, "steps after the resume")
    os.kill(new_pid, signal.SIGKILL)
    status = wait_for(lambda: (s := read_status(run_dir))["state"] == "died" and s, "the dead worker to read died")
    assert str(new_pid) in status["message"]
    assert [r.state for r in list_runs(workspace)] == ["died"]
    records = read_metrics(run_dir)
    resumed = [r for r in records if r.get("event") == "resumed"]
    assert [r["step"] for r in resumed] == [stopped_at]
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == list(range(1, len(steps) + 1))  # one clean history across the resume


def test_a_rank_that_fails_alone_says_why_where_the_launcher_and_status_json_see_it(tmp_path):
    from tui_ft.engine.files import write_json_atomic
    from tui_ft.engine.runs.worker import read_rank_errors, report_failure
    from tui_ft.engine.training.distributed import Group

    write_json_atomic(tmp_path / "status.json", {"state": "running", "step": 2})
    # A failure every rank meets at once (a non-finite loss) is rank 0's to report.
    assert report_failure(tmp_path, Group(1, 2), "the loss became nan at step 3", every_rank=True) == 1
    assert read_status(tmp_path)["state"] == "running"
    assert read_rank_errors(tmp_path) == {1: "the loss became nan at step 3"}
    # Rank 1 alone out of memory: under torchrun nobody else would tell status.json.
    assert report_failure(tmp_path, Group(1, 2), "out of memory: try a smaller --batch-size") == 1
    status = read_status(tmp_path)
    assert (status["state"], status["message"]) == ("failed", "rank 1 failed: out of memory: try a smaller --batch-size")
    # A second rank failing later does not overwrite the first reason.
    assert report_failure(tmp_path, Group(2, 3), "RuntimeError: boom") == 1
    assert read_status(tmp_path)["message"].startswith("rank 1 failed: out of memory")
    assert read_rank_errors(tmp_path) == {1: "out of memory: try a smaller --batch-size", 2: "RuntimeError: boom"}
