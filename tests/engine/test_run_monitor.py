"""The Runs pane's headless helpers: incremental series, downsampling, table rows, worker usage."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tui_ft.engine.runs.folder import read_metrics
from tui_ft.views.formatting import format_age, format_duration
from tui_ft.views.run_monitor import (
    RunHistory,
    Series,
    WorkerMonitor,
    downsample,
    last_record,
    log_tail,
    metric_series,
    run_rows,
)


def write_lines(path, records, torn: str = "") -> None:
    with open(path, "a") as file:
        file.writelines(json.dumps(r) + "\n" for r in records)
        file.write(torn)


def train(step: int, loss: float) -> dict:
    return {"kind": "train", "step": step, "epoch": 0.0, "time": 0.0, "loss": loss, "lr": 1e-4 * step}


def test_history_follows_the_file_like_the_engine_reader(tmp_path):
    path = tmp_path / "metrics.jsonl"
    history = RunHistory(tmp_path)
    write_lines(path, [train(s, 10.0 - s) for s in range(1, 6)], torn='{"kind": "train", "st')
    assert history.update()
    assert history.series[("train", "loss")].points() == [(s, 10.0 - s) for s in range(1, 6)]
    assert not history.update()  # nothing new: the torn line is still being written
    # The worker died after step 5, a resume from the step-3 checkpoint logs steps 4.. again.
    with open(path, "a") as file:
        file.write('ep": 9, "loss": 1.0}\n')
    write_lines(path, [{"kind": "event", "step": 3, "event": "resumed"}, train(4, 0.5), train(5, 0.4),
                       {"kind": "eval", "step": 5, "loss": 0.7, "ppl": 2.0}])
    assert history.update()
    records = read_metrics(path)
    for kind, key in (("train", "loss"), ("train", "lr"), ("eval", "ppl")):
        assert history.series[(kind, key)].points() == metric_series(records, kind, key)
    assert history.series[("train", "loss")].steps == [1, 2, 3, 4, 5]
    assert history.series[("train", "loss")].values[-2:] == [0.5, 0.4]


def test_series_downsample_spans_the_whole_history():
    points = [(float(s), float(s % 7)) for s in range(1, 10_001)]
    series = Series(points)
    shown = series.downsample(100)
    assert len(shown) == 100
    assert [v for p in shown for v in p] == pytest.approx([v for p in downsample(points, 100) for v in p])
    assert shown[0][0] == pytest.approx(50.5) and shown[-1][0] == pytest.approx(9950.5)
    assert series.downsample(20_000) == points  # fewer points than the budget: all of them
    assert downsample(points[:3], 10) == points[:3]


def test_last_record_skips_a_torn_line_and_reads_only_the_end(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_lines(path, [train(s, float(s)) for s in range(1, 3000)] + [{"kind": "eval", "step": 2999, "loss": 9.0}],
                torn='{"kind": "train", "step": 3000, "lo')
    assert last_record(path, "train")["step"] == 2999
    assert last_record(path, "eval")["loss"] == 9.0
    assert last_record(path, "train", tail_bytes=10) is None
    assert last_record(tmp_path / "missing.jsonl", "train") is None


def test_log_tail_keeps_the_last_state_of_progress_bars(tmp_path):
    (tmp_path / "worker.log").write_text("start\n" + "".join(f"line {i}\n" for i in range(500)) + "10%\r50%\r100%\n")
    tail = log_tail(tmp_path, max_lines=3)
    assert tail.splitlines() == ["line 498", "line 499", "100%"]


def test_format_duration():
    assert [format_duration(s) for s in (None, -1, 0, 45.4, 125, 3599, 3600 * 3 + 125)] == [
        "—", "—", "0s", "45s", "2m05s", "59m59s", "3h02m"]


def test_format_age_is_a_duration_ago():
    assert [format_age(s) for s in (None, 45.4, 125, 3600 * 3 + 125)] == ["", "45s ago", "2m05s ago", "3h02m ago"]


def test_run_rows_join_status_eta_and_last_loss(tmp_path):
    for name, state, created in (("old", "finished", 1.0), ("new", "running", 2.0)):
        run_dir = tmp_path / "checkpoints" / name
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps({"method": "lora", "model": "default", "dataset": "d.jsonl",
                                                      "created": created}))
        (run_dir / "status.json").write_text(json.dumps({"state": state, "pid": None, "step": 5, "total_steps": 20,
                                                         "eta_s": 90.0}))
        write_lines(run_dir / "metrics.jsonl", [train(s, 2.0 / s) for s in range(1, 6)])
    rows = run_rows(tmp_path)
    assert [r.info.name for r in rows] == ["old", "new"]
    assert [r.eta_s for r in rows] == [None, 90.0]  # a finished run has nothing left
    assert rows[1].last_loss == pytest.approx(0.4) and rows[1].progress == 0.25


def test_worker_usage_of_a_live_and_a_gone_process():
    # The child says when its interpreter is up: just after exec its memory is still tiny.
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; print('up', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "up"
        monitor = WorkerMonitor()
        first = monitor.usage(child.pid)
        assert first is not None and first.rss_bytes > 1_000_000
        assert monitor.usage(child.pid).cpu_percent >= 0.0
    finally:
        child.kill()
        child.wait()
    assert monitor.usage(child.pid) is None
    assert monitor.usage(None) is None
    assert WorkerMonitor().usage(os.getpid()).rss_bytes > 0


def test_gpu_usage_from_nvidia_smi(tmp_path):
    # A stand-in for the driver's tool, answering the two queries the monitor makes.
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\ncase "$1" in\n  --query-gpu=*) echo "87, 30000, 81559" ;;\n'
                    '  --query-compute-apps=*) echo "111, 500"; echo "4242, 12000" ;;\nesac\n')
    fake.chmod(0o755)
    monitor = WorkerMonitor()
    monitor._nvidia_smi = str(fake)
    gpu = monitor.gpu_usage(4242)
    mib = 1024 * 1024
    assert (gpu.utilization, gpu.used_bytes, gpu.total_bytes, gpu.process_bytes) == (87.0, 30000 * mib, 81559 * mib,
                                                                                       12000 * mib)
    assert monitor.gpu_usage(999).process_bytes is None  # the worker holds no GPU memory
    fake.write_text("#!/bin/sh\nexit 9\n")
    assert monitor.gpu_usage(4242) is None and monitor._nvidia_smi is None  # failed once: not asked again
