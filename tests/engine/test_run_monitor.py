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


def fake_nvidia_smi(folder, gpus: list[str], apps: list[str]):
    """A stand-in for the driver's tool answering the two queries the monitor makes (from files it rereads)."""
    (folder / "gpus.csv").write_text("".join(line + "\n" for line in gpus))
    (folder / "apps.csv").write_text("".join(line + "\n" for line in apps))
    fake = folder / "nvidia-smi"
    fake.write_text(f'#!/bin/sh\ncase "$1" in\n  --query-gpu=index,uuid,utilization.gpu,memory.used,memory.total) '
                    f'cat {folder}/gpus.csv ;;\n  --query-compute-apps=pid,gpu_uuid,used_memory) cat {folder}/apps.csv ;;\n'
                    '  *) exit 2 ;;\nesac\n')
    fake.chmod(0o755)
    monitor = WorkerMonitor()
    monitor._nvidia_smi = str(fake)
    return monitor


def test_gpu_usage_counts_only_the_gpus_and_memory_of_the_runs_processes(tmp_path):
    # Four GPUs; the run's two ranks (4242, 4243) are on GPUs 1 and 2, someone else's job on 0 and 2.
    monitor = fake_nvidia_smi(tmp_path, [
        "0, GPU-a, 99, 70000, 81559", "1, GPU-b, 87, 30000, 81559", "2, GPU-c, 40, 20000, 81559", "3, GPU-d, 0, 1, 81559",
    ], ["111, GPU-a, 69000", "4242, GPU-b, 12000", "4243, GPU-c, 11000", "112, GPU-c, 8000"])
    mib = 1024 * 1024
    gpu = monitor.gpu_usage({4242, 4243, 5})
    assert (gpu.utilization, gpu.used_bytes, gpu.total_bytes, gpu.process_bytes, gpu.indices) == (
        87.0, 50000 * mib, 2 * 81559 * mib, 23000 * mib, (1, 2))
    gpu = monitor.gpu_usage(4243)  # one process: its GPU only
    assert (gpu.used_bytes, gpu.process_bytes, gpu.indices) == (20000 * mib, 11000 * mib, (2,))
    assert monitor.gpu_usage(999) is None  # the run holds no GPU memory: a CPU run, or one still loading
    assert monitor._nvidia_smi is not None  # ... which is no reason to stop asking
    (tmp_path / "apps.csv").write_text("4242, GPU-b, [N/A]\n")  # MIG: no per-process memory
    gpu = monitor.gpu_usage(4242)
    assert (gpu.indices, gpu.process_bytes) == ((1,), None)
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")
    assert monitor.gpu_usage(4242) is None and monitor._nvidia_smi is None  # failed once: not asked again


def test_a_runs_gpu_usage_includes_its_ranks_and_never_asks_torch(tmp_path, monkeypatch):
    # A launcher whose child (a rank) holds the GPU memory, as under torchrun or the group launcher.
    launcher = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(child.pid, flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    rank = None
    try:
        rank = int(launcher.stdout.readline())
        monitor = fake_nvidia_smi(tmp_path, ["0, GPU-a, 50, 9000, 81559", "1, GPU-b, 5, 100, 81559"],
                                  [f"{rank}, GPU-b, 7000"])

        class NoTorch:
            def __getattr__(self, name):
                raise AssertionError(f"the dashboard touched torch.{name}")

        monkeypatch.setitem(sys.modules, "torch", NoTorch())
        gpu = monitor.usage(launcher.pid).gpu
        assert gpu is not None and gpu.indices == (1,) and gpu.process_bytes == 7000 * 1024 * 1024
        monitor._nvidia_smi = None  # no driver tool: nothing, rather than a CUDA context in the dashboard
        assert monitor.usage(launcher.pid).gpu is None
    finally:
        for pid in (rank, launcher.pid):
            if pid:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        launcher.wait()
