"""Pilot tests of the Benchmark pane: table from stored results, drill-down, sorting, export, evaluation."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from tui_ft.engine.evaluation import store as eval_store
from tui_ft.engine.files import write_json_atomic
from tui_ft.engine.models.default_model import default_model_dir
from tui_ft.ui.widgets.bench_grid import BenchGrid
from tui_ft.ui.widgets.bench_picker import ColumnPicker

from bench_workspace import (  # noqa: F401 (fixture)
    BENCHMARK,
    PPL,
    BenchApp,
    bench_home,
    benchmark_record,
    copy_datasets,
    headers,
    make_run,
    open_pane,
    shown,
)


async def test_table_fills_from_stored_results(bench_home):
    app = BenchApp(bench_home)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_pane(app, pilot)
        assert headers(grid) == ["model", "seed_benchmark %", "seed_instructions ppl"]
        rows = shown(grid)
        assert list(rows) == ["default", "run-a", "run-a · step-10", "run-a · step-20"]
        assert rows["default"] == ["40.0%", "12.50"]
        assert rows["run-a"] == ["80.0%", "6.25"]
        assert rows["run-a · step-10"] == ["60.0%", ""]
        assert rows["run-a · step-20"] == ["", "8.00"]
        assert not app.screen.query_one("#bench-empty", Static).display
        assert grid.cursor_coordinate.column == 1  # starts on the benchmark column


async def test_empty_state_says_how_to_start(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    copy_datasets(tmp_path / "ws")
    app = BenchApp(tmp_path / "ws")
    async with app.run_test(size=(80, 24)) as pilot:
        grid = await open_pane(app, pilot)
        empty = app.screen.query_one("#bench-empty", Static)
        assert empty.display
        assert "press e or enter to evaluate" in str(empty.render())
        assert headers(grid) == ["model", "seed_benchmark %"]  # the column evaluations will fill
        assert shown(grid) == {"default": [""]}


async def test_drill_down_lists_items_with_marks(bench_home):
    app = BenchApp(bench_home)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_pane(app, pilot)
        grid.move_cursor(row=1, column=1)  # run-a on seed_benchmark
        await pilot.press("enter")
        await pilot.pause()
        items = app.screen.query_one("#bench-items", DataTable)
        assert "4/5 correct (80.0%)" in str(app.screen.query_one("#bench-items-summary", Static).render())
        marks = [str(items.get_row_at(i)[1]) for i in range(items.row_count)]
        assert marks == ["✓", "✓", "✗", "✓", "✓"]
        assert str(items.get_row_at(2)[2]) == "What color is the sky?"
        assert str(items.get_row_at(2)[3]) == "blue"
        assert str(items.get_row_at(2)[4]) == "It is grey."
        assert str(items.get_row_at(3)[4]) == "There are 7."
        await pilot.press("down", "down")
        detail = str(app.screen.query_one("#bench-item-detail", Static).render())
        assert "item 3/5" in detail and "expected: blue" in detail and "reply: It is grey." in detail
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.query_one(BenchGrid) is grid
        grid.move_cursor(row=3, column=1)  # step-20 has no benchmark result
        await pilot.press("d")
        await pilot.pause()
        assert app.screen.query_one(BenchGrid) is grid  # nothing to drill into: a notification instead
        assert any("Nothing stored" in n.message for n in app._notifications)


async def test_sort_by_current_column(bench_home):
    app = BenchApp(bench_home)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_pane(app, pilot)
        await pilot.press("o")  # benchmark: highest first, empty last
        assert list(shown(grid)) == ["run-a", "run-a · step-10", "default", "run-a · step-20"]
        await pilot.press("o")
        assert list(shown(grid)) == ["default", "run-a · step-10", "run-a", "run-a · step-20"]
        await pilot.press("right", "o")  # perplexity: lowest first
        assert list(shown(grid)) == ["run-a", "run-a · step-20", "default", "run-a · step-10"]
        assert "sorted by seed_instructions ppl, best first" in str(app.screen.query_one("#bench-status", Static).render())


async def test_export_writes_csv_and_json(bench_home):
    app = BenchApp(bench_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_pane(app, pilot)
        await pilot.press("o", "x")
        await pilot.pause()
        exports = sorted((bench_home / "bench" / "exports").iterdir())
        assert [p.suffix for p in exports] == [".csv", ".json"]
        assert any("bench/exports/" in n.message and ".csv" in n.message for n in app._notifications)
    with open(exports[0], newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["model", "checkpoint", "seed_benchmark %", "seed_instructions ppl"]
    assert table[1:] == [["run-a", "", "80.0", "6.25"], ["run-a", "step-10", "60.0", ""],
                         ["default", "", "40.0", "12.5"], ["run-a", "step-20", "", "8.0"]]
    document = json.loads(exports[1].read_text())
    assert [c["key"] for c in document["columns"]] == [f"benchmark:{BENCHMARK}", f"perplexity:{PPL}"]
    first = document["rows"][0]
    assert (first["model"], first["checkpoint"]) == ("run-a", None)
    assert first["cells"][f"benchmark:{BENCHMARK}"]["score"] == pytest.approx(0.8)
    assert first["cells"][f"benchmark:{BENCHMARK}"]["n"] == 5
    assert first["cells"][f"perplexity:{PPL}"]["perplexity"] == pytest.approx(6.25)
    assert document["rows"][3]["cells"] == {f"perplexity:{PPL}": pytest.approx(
        {"perplexity": 8.0, "tokens": 80, "nll": 100.0, "template": "chat", "created": "2026-01-01T00:00:00+00:00"})}


def fake_job_starter(calls: list, record):
    """A ``start_eval_job`` that appends ``record(refs, **options)`` to ``calls`` and makes an empty job folder."""

    def start(home, refs, **options):
        calls.append(record(list(refs), **options))
        job_dir = Path(home) / "bench" / "jobs" / f"fake-{len(calls)}"
        job_dir.mkdir(parents=True)
        return job_dir

    return start


async def test_evaluate_marked_rows_starts_jobs(bench_home, monkeypatch):
    import tui_ft.ui.screens.benchmark as pane

    calls = []

    def record(refs, benchmark=None, perplexity_path=None, checkpoint=None, **_):
        return {"refs": refs, "benchmark": benchmark, "perplexity_path": perplexity_path, "checkpoint": checkpoint}

    monkeypatch.setattr(pane, "start_eval_job", fake_job_starter(calls, record))
    app = BenchApp(bench_home)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_pane(app, pilot)
        grid.move_cursor(row=0, column=2)  # default, on the perplexity column
        await pilot.press("space", "space")  # marks default and run-a (space moves down)
        assert "2 marked" in str(app.screen.query_one("#bench-status", Static).render())
        await pilot.press("down", "space")  # and run-a · step-20
        await pilot.press("e")
        await app.workers.wait_for_complete()
        await pilot.pause()
        path = str(bench_home / PPL)
        assert calls == [
            {"refs": ["default", "run-a"], "benchmark": None, "perplexity_path": path, "checkpoint": None},
            {"refs": ["run-a"], "benchmark": None, "perplexity_path": path, "checkpoint": "step-20"},
        ]
        assert app.screen.marked == set()
        calls.clear()
        await pilot.press("b")  # the next column: the benchmark again (columns cycle)
        grid.move_cursor(row=3)
        await pilot.press("enter")  # an empty cell: enter evaluates it
        await app.workers.wait_for_complete()
        assert calls == [{"refs": ["run-a"], "benchmark": str(bench_home / BENCHMARK), "perplexity_path": None,
                          "checkpoint": "step-20"}]


def store_exact_result(home: Path) -> None:
    """What `tui-ft eval default --benchmark datasets/seed_benchmark.jsonl --scorer exact` stores: 0%, a day later."""
    model_id = f"default:{default_model_dir()}"
    identity = {"kind": "benchmark", "model": model_id, "checkpoint": None, "template": "chat", "benchmark": BENCHMARK,
                "scorer": "exact"}
    record = benchmark_record([False] * 5) | {"scorer": "exact"}
    write_json_atomic(eval_store.result_path(home / "bench" / "default", identity), identity | record | {
        "model": "default", "model_id": model_id, "created": "2026-01-02T00:00:00+00:00",
        "key": eval_store.result_key(identity), "fingerprint": {}}, parents=True)


async def test_another_scorer_gets_its_own_column_and_evaluates_with_it(bench_home, monkeypatch):
    import tui_ft.ui.screens.benchmark as pane

    store_exact_result(bench_home)
    calls = []

    def record(refs, checkpoint=None, scorer=None, **_):
        return refs, checkpoint, scorer

    monkeypatch.setattr(pane, "start_eval_job", fake_job_starter(calls, record))
    app = BenchApp(bench_home)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_pane(app, pilot)
        assert headers(grid) == ["model", "seed_benchmark %", "seed_benchmark exact %", "seed_instructions ppl"]
        rows = shown(grid)
        assert rows["default"] == ["40.0%", "0.0%", "12.50"]  # the newer exact result hides not the contains one
        assert rows["run-a"] == ["80.0%", "", "6.25"]
        picker = app.screen.query_one(ColumnPicker)
        assert ("exact score · seed_benchmark.jsonl", f"benchmark+exact:{BENCHMARK}") in picker.options

        grid.move_cursor(row=0, column=2)  # default on the exact column: its items say which scorer
        await pilot.press("enter")
        await pilot.pause()
        assert "scorer exact" in str(app.screen.query_one("#bench-items-summary", Static).render())
        await pilot.press("escape")
        await pilot.pause()

        grid.move_cursor(row=1, column=2)  # run-a has no exact score yet: evaluating it uses exact
        await pilot.press("e")
        await app.workers.wait_for_complete()
        grid.move_cursor(row=3, column=1)  # step-20 on the default column: the default scorer
        await pilot.press("e")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert calls == [(["run-a"], None, "exact"), (["run-a"], "step-20", None)]
        assert any("seed_benchmark.jsonl (scorer exact)" in n.message for n in app._notifications)


async def test_running_job_shows_progress_stops_and_reports(bench_home, monkeypatch):
    """A job started elsewhere (the CLI, a closed dashboard) shows its progress in its cell."""
    import tui_ft.ui.screens.benchmark as pane

    started = []
    monkeypatch.setattr(pane, "start_eval_job", lambda *args, **kwargs: started.append(args))
    from tui_ft.engine.processes import EVAL_MODULE, start_time

    job_dir = bench_home / "bench" / "jobs" / "20260101-000000-abcd"
    job_dir.mkdir(parents=True)
    # Stands in for the job's worker: a stop signals only a process that runs the evaluation
    # module for this job's folder and started when its status says.
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", EVAL_MODULE, str(job_dir)])
    import psutil

    for _ in range(1200):  # until it has exec'd: before, its command line is still pytest's, and no stop reaches it
        if psutil.Process(worker.pid).cmdline()[-2:] == [EVAL_MODULE, str(job_dir)]:
            break
        time.sleep(0.05)
    write_json_atomic(job_dir / "job.json", {
        "id": job_dir.name, "refs": ["default", "run-a"], "checkpoint": None, "perplexity": [],
        "benchmarks": [str(bench_home / "datasets" / "seed_heldout.jsonl")]}, parents=True)
    shutil.copy(bench_home / BENCHMARK, bench_home / "datasets" / "seed_heldout.jsonl")
    status = {"state": "running", "pid": worker.pid, "pid_started": start_time(worker.pid), "done": 3, "total": 10,
              "message": "", "results": []}
    write_json_atomic(job_dir / "status.json", status, parents=True)
    try:
        app = BenchApp(bench_home)
        async with app.run_test(size=(120, 40)) as pilot:
            grid = await open_pane(app, pilot)
            assert headers(grid)[1:] == ["seed_benchmark %", "seed_heldout %", "seed_instructions ppl"]
            assert [shown(grid)[name][1] for name in ("default", "run-a")] == ["running 3/5", "queued"]
            assert "evaluating default on seed_heldout.jsonl: 3/5" in str(app.screen.query_one("#bench-status", Static).render())
            grid.move_cursor(row=0, column=2)
            await pilot.press("e")  # already running there: no second job
            assert started == [] and any("Already evaluating default" in n.message for n in app._notifications)
            await pilot.press("s")
            assert (job_dir / "STOP").exists()
            assert worker.wait(timeout=10) == -15  # SIGTERM reached the worker
            write_json_atomic(job_dir / "status.json", status | {"state": "stopped", "done": 3}, parents=True)
            for _ in range(40):  # a later poll (every second) sees the job ended; a loaded CPU is slow
                await pilot.pause(0.25)
                await app.workers.wait_for_complete()
                if [shown(grid)[name][1] for name in ("default", "run-a")] == ["", ""]:
                    break
            assert [shown(grid)[name][1] for name in ("default", "run-a")] == ["", ""]
            assert any("Stopped evaluating default, run-a on seed_heldout.jsonl" in n.message for n in app._notifications)
    finally:
        worker.kill()


async def test_real_job_fills_the_cell(bench_home, tiny_model_dir):
    """A real detached job on a tiny run (full weights in model/, made by build_tiny_model) fills a cell.

    It measures perplexity: the same job path as a benchmark, without generating replies.
    """
    from tui_ft.views.bench_table import cell_text

    run_dir = make_run(bench_home, "tiny", final=False)
    config = json.loads((run_dir / "run.json").read_text()) | {"template": "alpaca", "method": "full"}
    (run_dir / "run.json").write_text(json.dumps(config))
    shutil.copytree(tiny_model_dir, run_dir / "model")
    app = BenchApp(bench_home)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_pane(app, pilot)
        grid.move_cursor(row=list(shown(grid)).index("tiny"), column=2)  # seed_instructions ppl
        await pilot.press("e")
        deadline, seen = time.monotonic() + 120, set()
        while time.monotonic() < deadline and not any(ch.isdigit() for ch in shown(grid)["tiny"][1].split(" ")[0]):
            seen.add(shown(grid)["tiny"][1].split(" ")[0])
            await pilot.pause(0.2)
        assert seen & {"queued", "running"}  # progress was shown while the job ran
        # The cell fills from the stored result; the job's end is read by another poll, which a
        # busy CPU can run a second or more later.
        finished = lambda: any("Evaluation finished" == n.title for n in app._notifications)  # noqa: E731
        while time.monotonic() < deadline + 60 and not finished():
            await pilot.pause(0.2)
        assert finished(), [n.message for n in app._notifications]
        stored = [r for r in eval_store.load_results(bench_home) if r["model"] == "tiny"]
        assert len(stored) == 1 and stored[0]["tokens"] > 0 and stored[0]["template"] == "alpaca"
        assert shown(grid)["tiny"][1] == cell_text(stored[0])
        await pilot.press("enter")  # a filled cell: its details
        assert f"over {stored[0]['tokens']} scored tokens" in str(app.screen.query_one("#bench-items-summary", Static).render())
