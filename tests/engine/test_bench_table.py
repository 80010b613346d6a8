"""The Benchmark table built from stored results: rows, columns (one per benchmark and scorer), newest-wins cells,
sorting, jobs, export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tui_ft.engine.evaluation import store as eval_store
from tui_ft.engine.files import write_json_atomic
from tui_ft.views.bench_table import (
    BenchTable,
    Column,
    Row,
    build_table,
    candidate_columns,
    cell_text,
    export_table,
    file_default_scorer,
    job_cells,
    list_rows,
    sort_rows,
    workspace_stamp,
)

BENCH = Column("benchmark", "datasets/seed_benchmark.jsonl")
PPL = Column("perplexity", "datasets/seed_instructions.jsonl")
EXACT = Column("benchmark", BENCH.path, scorer="exact")


def write_result(home: Path, folder: Path, model: str, model_id: str, created: str, checkpoint=None, scorer=None,
                 **values) -> None:
    """Store a result the way the engine does (same file naming, atomic write); ``scorer`` is part of its identity."""
    kind = "benchmark" if "score" in values else "perplexity"
    identity = {"kind": kind, "model": model_id, "checkpoint": checkpoint, "template": "chat",
                "benchmark": BENCH.path if kind == "benchmark" else None,
                "dataset": PPL.path if kind == "perplexity" else None, "created": created}
    if scorer:
        identity["scorer"] = scorer
    path = eval_store.result_path(folder, identity)
    write_json_atomic(path, identity | values | {"model": model, "model_id": model_id, "key": "k"}, parents=True)


@pytest.fixture
def home(tmp_path) -> Path:
    run = tmp_path / "checkpoints" / "run-a"
    (run / "ckpt" / "step-5").mkdir(parents=True)
    (run / "ckpt" / "step-12").mkdir()
    (run / "ckpt" / "step-7.tmp").mkdir()  # a checkpoint being written is not a row
    (run / "run.json").write_text(json.dumps({"model": "default", "model_path": "/nowhere", "template": "chat"}))
    return tmp_path


MODELS = [{"ref": "default", "path": "/m/default", "kind": "default"},
          {"ref": "run-a", "path": "/m/default", "kind": "run", "adapter": "/x/adapter"}]


def test_rows_columns_and_newest_result_wins(home):
    run_id = f"run:{(home / 'checkpoints' / 'run-a').resolve()}"
    bench_dir = home / "bench" / "default"
    write_result(home, bench_dir, "default", "default:/m/default", "2026-01-01T00:00:00", score=0.2, n=5)
    write_result(home, bench_dir, "default", "default:/m/default", "2026-01-02T00:00:00", score=0.6, n=5)
    run_bench = home / "checkpoints" / "run-a" / "bench"
    write_result(home, run_bench, "run-a", run_id, "2026-01-01T00:00:00", checkpoint="step-12", perplexity=7.5, tokens=9)
    # A folder evaluated from the CLI with a relative path: its row uses the absolute folder.
    write_result(home, home / "bench" / "tiny-1234", "./tiny", "folder:/abs/tiny", "2026-01-01T00:00:00", score=1.0, n=5)

    table = build_table(home, rows=list_rows(home, models=MODELS))
    assert [(r.label, r.ref, r.checkpoint) for r in table.rows] == [
        ("default", "default", None), ("run-a", "run-a", None), ("run-a · step-5", "run-a", "step-5"),
        ("run-a · step-12", "run-a", "step-12"), ("tiny", "/abs/tiny", None)]
    assert table.columns == [BENCH, PPL]
    default, run_a, step5, step12, tiny = table.rows
    assert cell_text(table.cell(default, BENCH)) == "60.0%"  # the newer of two results
    assert table.value(step12, PPL) == 7.5 and cell_text(table.cell(step12, PPL)) == "7.50"
    assert table.cell(run_a, BENCH) is None and table.cell(step5, PPL) is None
    assert table.value(tiny, BENCH) == 1.0


def test_sorting_best_first_keeps_empty_cells_last():
    rows = [Row(name, name, None, "model", name) for name in "abcd"]
    cells = {("a@", BENCH.key): {"kind": "benchmark", "score": 0.4}, ("b@", BENCH.key): {"kind": "benchmark", "score": 0.9},
             ("d@", BENCH.key): {"kind": "benchmark", "score": 0.1},
             ("a@", PPL.key): {"kind": "perplexity", "perplexity": 30.0},
             ("c@", PPL.key): {"kind": "perplexity", "perplexity": 3.0}}
    table = BenchTable(rows, [BENCH, PPL], cells)
    assert [r.ref for r in sort_rows(table, rows, BENCH)] == ["b", "a", "d", "c"]
    assert [r.ref for r in sort_rows(table, rows, BENCH, best_first=False)] == ["d", "a", "b", "c"]
    assert [r.ref for r in sort_rows(table, rows, PPL)] == ["c", "a", "b", "d"]  # lower perplexity is better


def test_job_progress_is_split_over_its_cells(home):
    (home / "datasets").mkdir()
    bench = home / "datasets" / "seed_benchmark.jsonl"
    bench.write_text("".join(json.dumps({"instruction": f"q{i}", "expected": "a"}) + "\n" for i in range(4)))
    status = {"state": "running", "done": 6, "total": 8, "dir": "/j", "results": [
        {"model": "default", "benchmark": BENCH.path}],
        "job": {"refs": ["default", "run-a"], "checkpoint": None, "benchmarks": [str(bench)], "perplexity": []}}
    cells = job_cells(status, home)
    assert [(c.ref, c.column, c.text) for c in cells] == [("run-a", BENCH, "running 2/4")]
    three = status | {"done": 5, "job": status["job"] | {"refs": ["default", "run-a", "b"]}}
    assert [(c.ref, c.text) for c in job_cells(three, home)] == [("run-a", "running 1/4"), ("b", "queued")]
    waiting = job_cells(status | {"done": 4, "results": []}, home)
    assert [c.text for c in waiting] == ["running 4/4", "running 0/4"]  # the first's result is being written
    assert job_cells(status | {"state": "queued", "done": 0, "results": []}, home)[0].text == "queued"
    assert job_cells(status | {"state": "finished"}, home) == []


def test_an_export_in_its_default_folder_is_not_read_back_as_a_result(home, capsys):
    table = BenchTable([Row("default", "d", None, "model", "default")], [BENCH], {
        ("d@", BENCH.key): {"kind": "benchmark", "score": 0.5, "n": 2, "scorer": "exact", "items": [{}]}})
    csv_path, json_path = export_table(table, home)
    assert json_path.parent == home / "bench" / "exports" and json_path.is_file()
    assert json_path not in eval_store.result_files(home)
    assert "skipped" not in capsys.readouterr().err  # no warning about a file that was never a result


def test_export_to_a_given_path(home):
    rows = [Row("default", "d", None, "model", "default"), Row("run-a", "r", "step-5", "checkpoint", "run-a · step-5")]
    table = BenchTable(rows, [BENCH, PPL], {
        ("d@", BENCH.key): {"kind": "benchmark", "score": 2 / 3, "n": 3, "scorer": "exact", "items": [{}]},
        ("r@step-5", PPL.key): {"kind": "perplexity", "perplexity": 5.123456, "tokens": 40, "nll": 65.3}})
    csv_path, json_path = export_table(table, home, destination=home / "out" / "table.csv")
    assert (csv_path.name, json_path.name) == ("table.csv", "table.json")
    with open(csv_path, newline="") as handle:
        assert list(csv.reader(handle)) == [
            ["model", "checkpoint", "seed_benchmark %", "seed_instructions ppl"],
            ["default", "", "66.67", ""], ["run-a", "step-5", "", "5.1235"]]
    document = json.loads(json_path.read_text())
    assert document["rows"][0]["cells"] == {BENCH.key: {"score": pytest.approx(2 / 3), "n": 3, "scorer": "exact"}}
    assert document["rows"][1]["checkpoint"] == "step-5"
    assert document["rows"][1]["cells"][PPL.key]["tokens"] == 40


def test_candidate_columns_by_format(home):
    folder = home / "datasets"
    folder.mkdir()
    (folder / "bench.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    (folder / "chat.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    (folder / "prefs.jsonl").write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n')
    (folder / "broken.jsonl").write_text('{"instruction": "x"}\n')
    (folder / "only_bench.jsonl").write_text('{"instruction": "q", "expected": "a"}\n')
    (folder / "tune.jsonl").write_text('{"instruction": "say hi", "response": "hi"}\n')  # replies: no answers to score
    assert candidate_columns(home) == [
        Column("benchmark", "datasets/bench.jsonl"), Column("benchmark", "datasets/only_bench.jsonl"),
        Column("perplexity", "datasets/bench.jsonl"), Column("perplexity", "datasets/chat.jsonl"),
        Column("perplexity", "datasets/tune.jsonl")]


def test_workspace_stamp_changes_with_checkpoints_and_results(home):
    before = workspace_stamp(home)
    assert workspace_stamp(home) == before
    (home / "checkpoints" / "run-a" / "ckpt" / "step-20").mkdir()
    after_checkpoint = workspace_stamp(home)
    assert after_checkpoint != before
    write_result(home, home / "bench" / "default", "default", "default:/m", "2026-01-01", score=0.5, n=2)
    assert workspace_stamp(home) != after_checkpoint


def write_benchmark(home: Path, choices: bool = False) -> Path:
    """``datasets/seed_benchmark.jsonl`` with three items, each with choices when ``choices``."""
    (home / "datasets").mkdir(exist_ok=True)
    path = home / BENCH.path
    extra = {"choices": ["a", "b"]} if choices else {}
    path.write_text("".join(json.dumps({"instruction": f"q{i}", "expected": "a"} | extra) + "\n" for i in range(3)))
    return path


def test_each_scorer_of_a_benchmark_gets_its_own_column(home):
    """`tui-ft eval --scorer exact` after the default run: both scores stay visible, side by side."""
    write_benchmark(home)
    folder, model_id = home / "bench" / "default", "default:/m/default"
    write_result(home, folder, "default", model_id, "2026-01-01T00:00:00", scorer="contains", score=1.0, n=3)
    write_result(home, folder, "default", model_id, "2026-01-02T00:00:00", scorer="exact", score=0.0, n=3)
    table = build_table(home, rows=list_rows(home, models=MODELS))
    assert table.columns == [BENCH, EXACT]
    assert [c.label for c in table.columns] == ["seed_benchmark %", "seed_benchmark exact %"]
    default = table.rows[0]
    assert (table.value(default, BENCH), table.value(default, EXACT)) == (1.0, 0.0)  # the newer exact hides nothing

    # A newer result under the default scorer (named, or left out as older records do) replaces the default cell only.
    write_result(home, folder, "default", model_id, "2026-01-03T00:00:00", score=2 / 3, n=3)
    table = build_table(home, rows=list_rows(home, models=MODELS))
    assert table.columns == [BENCH, EXACT]
    assert (table.value(default, BENCH), table.value(default, EXACT)) == (2 / 3, 0.0)


def test_the_default_scorer_follows_the_benchmark_file(home):
    """A multiple-choice benchmark's default is ``choice``: ``contains`` there is the other column."""
    write_benchmark(home, choices=True)
    assert file_default_scorer(BENCH.path, home) == "choice"
    assert file_default_scorer("datasets/gone.jsonl", home) == "contains"  # deleted since: the usual default
    folder, model_id = home / "bench" / "default", "default:/m/default"
    write_result(home, folder, "default", model_id, "2026-01-01T00:00:00", scorer="choice", score=0.5, n=3)
    write_result(home, folder, "default", model_id, "2026-01-02T00:00:00", scorer="contains", score=0.25, n=3)
    table = build_table(home, rows=list_rows(home, models=MODELS))
    contains = Column("benchmark", BENCH.path, scorer="contains")
    assert table.columns == [BENCH, contains]
    assert contains.label == "seed_benchmark contains %"
    assert (table.value(table.rows[0], BENCH), table.value(table.rows[0], contains)) == (0.5, 0.25)


def test_column_keys_name_the_scorer_and_read_back():
    assert BENCH.key == "benchmark:datasets/seed_benchmark.jsonl"  # unchanged: exports and pickers keep their keys
    assert EXACT.key == "benchmark+exact:datasets/seed_benchmark.jsonl"
    for column in (BENCH, EXACT, PPL, Column("benchmark", "/abs/with:colon.jsonl", scorer="choice")):
        assert Column.from_key(column.key) == column
    assert BENCH != EXACT


def test_a_job_with_a_scorer_fills_that_scorer_column(home):
    bench = write_benchmark(home)
    status = {"state": "running", "done": 1, "total": 3, "dir": "/j", "results": [],
              "job": {"refs": ["default"], "checkpoint": None, "benchmarks": [str(bench)], "perplexity": []}}
    scored = lambda scorer: [c.column for c in job_cells(status | {"job": status["job"] | {"scorer": scorer}}, home)]  # noqa: E731
    assert scored("exact") == [EXACT]
    assert scored("contains") == [BENCH] and scored(None) == [BENCH]  # the default, named or not


def test_export_keeps_scorer_columns_apart(home):
    rows = [Row("default", "d", None, "model", "default")]
    table = BenchTable(rows, [BENCH, EXACT], {
        ("d@", BENCH.key): {"kind": "benchmark", "score": 1.0, "n": 5, "scorer": "contains"},
        ("d@", EXACT.key): {"kind": "benchmark", "score": 0.0, "n": 5, "scorer": "exact"}})
    csv_path, json_path = export_table(table, home, destination=home / "out.csv")
    with open(csv_path, newline="") as handle:
        assert list(csv.reader(handle)) == [["model", "checkpoint", "seed_benchmark %", "seed_benchmark exact %"],
                                            ["default", "", "100.0", "0.0"]]
    document = json.loads(json_path.read_text())
    assert [(c["key"], c["scorer"]) for c in document["columns"]] == [(BENCH.key, None), (EXACT.key, "exact")]
    assert document["rows"][0]["cells"][EXACT.key] == {"score": 0.0, "n": 5, "scorer": "exact"}
