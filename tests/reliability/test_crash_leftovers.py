"""Files a crash (or a failing disk) can leave behind: every reader recovers, nothing raises.

A run folder made by the engine gets one damaged file at a time; then the engine's readers
(``read_status``, ``list_runs``, ``read_metrics``, ``MetricsTail``), the dashboard's
(``run_rows``, ``RunHistory``, ``last_record``) and ``tui-ft runs [--json]`` read it, and
``resume_run`` must still accept the run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tui_ft.cli import main
from tui_ft.engine.runs import lifecycle as runs
from tui_ft.engine.runs import list_runs, read_metrics, read_status, resume_run
from tui_ft.engine.runs.folder import MetricsTail, MetricsWriter, update_status
from tui_ft.views.run_monitor import RunHistory, last_record, run_rows

from report import Section
from workers import new_run

STEPS = 5
# name: (what the test writes, what it damages)
DAMAGE = {
    "torn-metrics": ("a torn last line in metrics.jsonl", "metrics.jsonl"),
    "zeroed-metrics": ("NUL bytes and invalid UTF-8 in the middle of metrics.jsonl", "metrics.jsonl"),
    "half-status": ("status.json cut in half", "status.json"),
    "empty-status": ("status.json empty (0 bytes)", "status.json"),
    "garbage-status": ("status.json random bytes", "status.json"),
    "list-status": ("status.json a JSON array", "status.json"),
    "typed-status": ("status.json with wrong types (pid \"x\", step \"7\", started [], updated \"soon\")", "status.json"),
    "negative-pid": ("status.json with pid -1", "status.json"),
    "half-run-json": ("run.json cut in half", "run.json"),
}

SECTION = Section(
    "leftovers",
    "Damaged files left by a crash",
    [
        "Written by `tests/reliability/test_crash_leftovers.py`. One file of a run folder damaged at a time (a run",
        f"whose worker died after {STEPS} logged steps); read by `read_status`, `list_runs`, `read_metrics`,",
        "`MetricsTail`, the Runs pane's `run_rows`/`RunHistory`/`last_record`, `tui-ft runs` and `tui-ft runs --json`.",
    ],
    ["damage", "trials", "outcome"],
    list(DAMAGE),
)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    SECTION.write_if_complete()


def dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


@pytest.fixture(scope="module")
def crashed_template(tmp_path_factory, tiny_model_dir) -> Path:
    """A run folder as a worker killed after ``STEPS`` steps leaves it (copied by each test)."""
    home = tmp_path_factory.mktemp("crashed")
    run_dir = new_run(home, tiny_model_dir, name="crashed", max_steps=10)
    writer = MetricsWriter(run_dir / "metrics.jsonl")
    writer.log("event", 0, 0.0, event="started", message="started")
    for step in range(1, STEPS + 1):
        writer.log("train", step, step / 4, loss=3.0 - step / 10, lr=1e-3, tokens=100, step_time=0.1)
    writer.close()
    update_status(run_dir, state="running", pid=dead_pid(), pid_started=1.0, step=STEPS, total_steps=10,
                  message="loss 2.5")  # pid_started: a reused pid is not this worker
    return run_dir


def died_run(home: Path, template: Path, name: str = "crashed") -> Path:
    return Path(shutil.copytree(template, home / "checkpoints" / name))


def damage(run_dir: Path, kind: str) -> None:
    status, metrics = run_dir / "status.json", run_dir / "metrics.jsonl"
    if kind == "torn-metrics":
        with open(metrics, "ab") as file:
            file.write(b'{"kind": "train", "step": 6, "lo')
    elif kind == "zeroed-metrics":
        lines = metrics.read_bytes().split(b"\n")
        lines[2] = b"\x00" * len(lines[2])
        lines[3] = b'{"kind": "train", "step": 3, "note": "\xff\xfe"}'
        metrics.write_bytes(b"\n".join(lines))
    elif kind == "half-status":
        data = status.read_bytes()
        status.write_bytes(data[: len(data) // 2])
    elif kind == "empty-status":
        status.write_bytes(b"")
    elif kind == "garbage-status":
        status.write_bytes(bytes(range(256)) * 4)
    elif kind == "list-status":
        status.write_bytes(b"[1, 2, 3]")
    elif kind == "typed-status":
        record = json.loads(status.read_text())
        status.write_text(json.dumps(record | {"pid": "x", "step": "7", "started": [], "updated": "soon"}))
    elif kind == "negative-pid":
        status.write_text(json.dumps(json.loads(status.read_text()) | {"pid": -1}))
    elif kind == "half-run-json":
        data = (run_dir / "run.json").read_bytes()
        (run_dir / "run.json").write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_readers_recover_from_a_damaged_file(workspace, crashed_template, monkeypatch, capsys, kind):
    run_dir = died_run(workspace, crashed_template)
    assert read_status(run_dir)["state"] == "died"
    damage(run_dir, kind)

    status = read_status(run_dir)
    infos = list_runs(workspace)
    records = read_metrics(run_dir)
    tailed = MetricsTail(run_dir / "metrics.jsonl").read_new()
    history = RunHistory(run_dir)
    history.update()
    rows = run_rows(workspace)
    last = last_record(run_dir / "metrics.jsonl", "train")
    assert main(["--home", str(workspace), "runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert main(["--home", str(workspace), "runs"]) == 0
    table = capsys.readouterr().out
    for row in rows:
        row.progress  # noqa: B018 - the Runs pane draws it: it must not raise

    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    if kind == "half-run-json":  # not a run any more: listed nowhere, and nothing raised
        assert infos == [] and listed == [] and rows == [] and "no runs" in table
        SECTION.add(kind, DAMAGE[kind][0], 1, "the folder is skipped by every list (not a run); no exception")
        return
    assert [i.name for i in infos] == [r["name"] for r in listed] == ["crashed"] and "crashed" in table
    if kind in ("torn-metrics", "zeroed-metrics"):
        lost = 2 if kind == "zeroed-metrics" else 0  # the two damaged lines
        assert len(train_steps) == STEPS - lost and train_steps[-1] == STEPS
        assert [r["step"] for r in tailed if r["kind"] == "train"] == train_steps
        assert len(history.series[("train", "loss")]) == STEPS - lost
        assert last["step"] == STEPS
        assert status["state"] == infos[0].state == "died"
        outcome = (f"the complete records are read ({STEPS - lost} of {STEPS} train steps), the damaged lines skipped; "
                   "the run reads `died`")
    else:
        assert train_steps == list(range(1, STEPS + 1))  # the history is intact
        assert status["state"] in runs.LIVE_STATES + runs.FINAL_STATES
        assert infos[0].state == listed[0]["state"] == status["state"]
        outcome = f"the run is listed, reads `{status['state']}`, its {STEPS}-step history intact"

    started = []
    monkeypatch.setattr(runs, "launch_run", lambda path: started.append(path) or 4242)
    assert resume_run(run_dir) == 4242 and started  # a damaged leftover never blocks a resume
    assert read_status(run_dir)["state"] == "queued"
    SECTION.add(kind, DAMAGE[kind][0], 1, outcome + "; `runs resume` accepts it; no exception")


def test_runs_json_in_a_fresh_process_with_every_damage(workspace, crashed_template):
    """The CLI as a user runs it, on a workspace holding each damaged run at once."""
    for kind in DAMAGE:
        damage(died_run(workspace, crashed_template, kind), kind)
    result = subprocess.run([sys.executable, "-m", "tui_ft", "--home", str(workspace), "runs", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    names = sorted(r["name"] for r in json.loads(result.stdout))
    assert names == sorted(k for k in DAMAGE if k != "half-run-json")
