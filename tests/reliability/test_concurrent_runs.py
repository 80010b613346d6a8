"""Two runs at once on one workspace, watched by two dashboards, launched from a terminal that hangs up.

A launcher process (standing in for the dashboard in a terminal, in a process group of its
own) starts two real detached workers with ``launch_run``; each is paused (SIGSTOP) once it
trains, so both are mid-run when the launcher's process group gets SIGHUP (an SSH drop) and one
worker gets a SIGHUP of its own; then both continue (SIGCONT) side by side. Two poller processes
(``dashboard_poller.py``) read the workspace like the Runs pane all along. Both runs must
finish, no file read may be corrupt, and each dashboard must have seen every step.

The dashboard killed for real (a tmux session killed mid-run, reattached, the run still going
with its whole history) is ``tests/e2e/test_tmux_reattach.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import psutil
import pytest

from tui_ft.engine.runs import read_metrics, read_status

from report import Section
from workers import new_run, wait_for

STEPS = 30
POLLER = Path(__file__).with_name("dashboard_poller.py")
# The launcher stands in for a dashboard in a terminal, where a hangup ends it: SIGHUP is set back
# to its default, since an ignored SIGHUP is inherited (a suite started under nohup ignores it).
LAUNCHER = ("import signal, sys, time\nsignal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
            "from tui_ft.engine.runs import launch_run\n"
            "print(*[launch_run(p) for p in sys.argv[1:]], flush=True)\ntime.sleep(600)\n")

SECTION = Section(
    "concurrency",
    "Two runs, two dashboards, a hangup",
    [
        "Written by `tests/reliability/test_concurrent_runs.py`: two real detached workers (`launch_run`, tiny model,",
        f"{STEPS} steps each, a checkpoint every 2 steps) on one workspace, started by a launcher in its own process group",
        "that then receives SIGHUP, while two poller processes read the workspace like the Runs pane (`run_rows`,",
        "`RunHistory`) and parse every `status.json` and every complete `metrics.jsonl` line they read. The dashboard",
        "killed in a real terminal (tmux session killed, reattached) is `tests/e2e/test_tmux_reattach.py`.",
    ],
    ["fault", "trials", "outcome"],
    ["sigstop", "sighup-group", "sighup-worker", "two-runs", "two-dashboards"],
)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    SECTION.write_if_complete()


def test_two_runs_two_dashboards_and_a_hangup(workspace, tiny_model_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run_dirs = [new_run(workspace, tiny_model_dir, name="lora-run", method="lora", lr=1e-2, max_steps=STEPS, save_every=2),
                new_run(workspace, tiny_model_dir, name="full-run", method="full", lr=1e-3, max_steps=STEPS, save_every=2)]
    outs = [tmp_path / f"dashboard-{i}.json" for i in (1, 2)]
    pollers = [subprocess.Popen([sys.executable, str(POLLER), str(workspace), str(out), "2", "300"], env=env)
               for out in outs]
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, *map(str, run_dirs)], stdout=subprocess.PIPE,
                                text=True, start_new_session=True, env=env)
    pids = []
    try:
        pids = [int(pid) for pid in launcher.stdout.readline().split()]
        assert len(pids) == 2
        # Pause each worker (SIGSTOP) as soon as it trains: the one that loaded first waits for
        # the other, so the hangup comes while both are mid-run and they then train side by side.
        waiting = dict(zip(pids, run_dirs, strict=False))
        while waiting:
            pid, run_dir = wait_for(lambda: next(((p, d) for p, d in waiting.items()
                                                  if (s := read_status(d))["state"] == "running" and s["step"] >= 1), None),
                                    "a worker to train", timeout=300)
            os.kill(pid, signal.SIGSTOP)
            del waiting[pid]
        assert all(os.getsid(pid) == pid != os.getsid(launcher.pid) for pid in pids)  # sessions of their own
        paused_at = [read_status(run_dir)["step"] for run_dir in run_dirs]

        os.killpg(launcher.pid, signal.SIGHUP)  # the terminal hangs up on the launcher's process group
        assert launcher.wait(timeout=30) == -signal.SIGHUP
        os.kill(pids[0], signal.SIGHUP)  # a hangup that reaches a worker itself is ignored
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

        for run_dir in run_dirs:
            wait_for(lambda run_dir=run_dir: read_status(run_dir)["state"] in ("finished", "failed", "died", "stopped"),
                     f"{run_dir.name} to end", timeout=300, interval=0.2)
        for poller in pollers:
            assert poller.wait(timeout=60) == 0
    finally:
        for pid in pids:
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)
        for process in (launcher, *pollers):
            if process.poll() is None:
                process.kill()
                process.wait()

    for run_dir in run_dirs:
        status = read_status(run_dir)
        assert (status["state"], status["step"]) == ("finished", STEPS), (run_dir.name, status)
        assert [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"] == list(range(1, STEPS + 1))
        for line in (run_dir / "metrics.jsonl").read_bytes().splitlines():
            orjson.loads(line)  # every line of the finished file parses
        assert "received SIGHUP" not in (run_dir / "worker.log").read_text()
    assert max(paused_at) < STEPS // 2  # the hangup came mid-run for both
    times = [[r["time"] for r in read_metrics(run_dir) if r["kind"] == "train"] for run_dir in run_dirs]
    assert max(t[0] for t in times) < min(t[-1] for t in times)  # they trained at the same time
    seen = [json.loads(out.read_text()) for out in outs]
    for dashboard in seen:
        assert dashboard["exceptions"] == [], dashboard["exceptions"][0]
        assert (dashboard["bad_status"], dashboard["bad_metrics_lines"]) == (0, 0)
        assert dashboard["polls"] >= 20 and dashboard["status_reads"] >= 40
        assert dashboard["final"] == {"lora-run": "finished", "full-run": "finished"}
        assert all("running" in states for states in dashboard["states"].values())  # it watched them train
        assert dashboard["loss_points"] == {"lora-run": STEPS, "full-run": STEPS}  # the whole history

    SECTION.add("sigstop", "each worker paused (SIGSTOP) mid-run, then continued", 2,
                "both train on from where they were; the pause reads as `running` (the process is alive)")
    SECTION.add("sighup-group", "SIGHUP to the launcher's process group (terminal hangup)", 1,
                "the launcher dies; both workers (own sessions) train on and finish")
    SECTION.add("sighup-worker", "SIGHUP sent to a worker itself", 1, "ignored; the run finishes")
    SECTION.add("two-runs", "two runs training at once on one workspace", 1,
                f"both `finished` (their training overlapped in time), {STEPS} train steps each, every `metrics.jsonl` line parses")
    SECTION.add("two-dashboards", "two dashboards polling both runs all along", 2,
                "0 corrupt `status.json` reads, 0 corrupt complete metrics lines, no exception; each saw both runs "
                f"`running` then `finished` and all {STEPS} losses of each")
