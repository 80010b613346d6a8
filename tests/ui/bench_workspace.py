"""A fixed Benchmark workspace for the pane's Pilot and snapshot tests: runs, checkpoints, stored results.

Results are written with the engine's own store functions (no model runs), so the table's
contents are known exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tui_ft.engine.evaluation import store as eval_store
from tui_ft.engine.files import write_json_atomic
from tui_ft.engine.models.default_model import default_model_dir
from tui_ft.engine.models.references import ModelRef
from tui_ft.ui.app import TuiFtApp
from tui_ft.ui.widgets.bench_grid import BenchGrid

REPO = Path(__file__).resolve().parents[2]
BENCH_HOME = Path("/tmp/tui_ft_ui_bench")  # its own fixed path: snapshots show it, other panes' tests use theirs
BENCHMARK = "datasets/seed_benchmark.jsonl"
PPL = "datasets/seed_instructions.jsonl"
# (right reply, wrong reply) per item, consistent with the "contains" rule.
REPLIES = [("4", "5"), ("Paris is the capital.", "Lyon."), ("The sky is blue.", "It is grey."),
           ("There are 7.", "Six."), ("Water, H2O.", "Salt.")]
EXPECTED = ["4", "Paris", "blue", "7", "water"]
QUESTIONS = ["What is 2 + 2?", "What is the capital of France?", "What color is the sky?",
             "How many days are in a week?", "What is H2O?"]


def make_run(home: Path, name: str, steps=(), final: bool = True) -> Path:
    """A run folder as the trainer leaves it: run.json, an adapter, checkpoints (no weights needed)."""
    run_dir = home / "checkpoints" / name
    (run_dir / "ckpt").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({
        "model": "default", "model_path": str(default_model_dir()), "template": "chat", "method": "lora",
        "dataset": "datasets/seed_instructions_20.jsonl", "created": 1.0}))
    if final:
        (run_dir / "adapter").mkdir()
        (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    for step in steps:
        (run_dir / "ckpt" / f"step-{step}").mkdir()
    return run_dir


def store(home: Path, model: str, record: dict, checkpoint: str | None = None) -> None:
    """Write a result where the engine would, through the engine's own store functions."""
    if model == "default":
        resolved, run_dir, model_id = ModelRef("default", default_model_dir(), "default"), None, f"default:{default_model_dir()}"
    else:
        run_dir = (home / "checkpoints" / model).resolve()
        resolved, model_id = ModelRef(model, default_model_dir(), "run", run_dir / "adapter", "chat"), f"run:{run_dir}"
    identity = {"kind": record["kind"], "model": model_id, "checkpoint": checkpoint, "template": "chat",
                "benchmark": record.get("benchmark"), "dataset": record.get("dataset")}
    path = eval_store.result_path(eval_store.results_dir(resolved, home, run_dir), identity)
    write_json_atomic(path, identity | record | {
        "model": model, "model_id": model_id, "created": "2026-01-01T00:00:00+00:00",
        "key": eval_store.result_key(identity), "fingerprint": {}}, parents=True)


def benchmark_record(correct: list[bool]) -> dict:
    items = [{"prompt": q, "expected": e, "reply": r[0] if ok else r[1], "correct": ok, "line": i + 1}
             for i, (q, e, r, ok) in enumerate(zip(QUESTIONS, EXPECTED, REPLIES, correct, strict=False))]
    return {"kind": "benchmark", "benchmark": BENCHMARK, "scorer": "contains", "settings": {"max_new_tokens": 64},
            "score": sum(correct) / len(correct), "n": len(correct), "items": items}


def perplexity_record(value: float) -> dict:
    return {"kind": "perplexity", "dataset": PPL, "perplexity": value, "nll": 100.0, "tokens": 80, "max_length": None}


def copy_datasets(home: Path) -> None:
    """Two shipped files only: datasets/ gains files over time, and the columns must not change."""
    (home / "datasets").mkdir(parents=True)
    for name in (BENCHMARK, PPL):
        shutil.copy(REPO / name, home / name)


def fill_workspace(home: Path) -> Path:
    """A fixed workspace: default, run-a (final + step-10 + step-20), and six stored results."""
    shutil.rmtree(home, ignore_errors=True)
    copy_datasets(home)
    make_run(home, "run-a", steps=(10, 20))
    store(home, "default", benchmark_record([True, True, False, False, False]))  # 40%
    store(home, "run-a", benchmark_record([True, True, False, True, True]))  # 80%
    store(home, "run-a", benchmark_record([True, True, False, True, False]), checkpoint="step-10")  # 60%
    store(home, "default", perplexity_record(12.5))
    store(home, "run-a", perplexity_record(6.25))
    store(home, "run-a", perplexity_record(8.0), checkpoint="step-20")
    return home


async def open_pane(app, pilot):
    """Wait for the pane's first loads; its grid."""
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()
    return app.screen.query_one(BenchGrid)


def shown(grid: BenchGrid) -> dict[str, list[str]]:
    """The table as text: row label -> cells."""
    rows = {}
    for index in range(grid.row_count):
        cells = [str(cell).strip() for cell in grid.get_row_at(index)]
        rows[cells[0].lstrip("● ").strip()] = cells[1:]
    return rows


def headers(grid: BenchGrid) -> list[str]:
    """The column headers."""
    return [str(column.label) for column in grid.columns.values()]


class BenchApp(TuiFtApp):
    """The dashboard opened on the Benchmark pane (the Datasets pane would load a tokenizer first)."""

    DEFAULT_MODE = "benchmark"
    CSS_PATH = REPO / "tui_ft" / "ui" / "app.tcss"  # a relative path would be read beside this test


@pytest.fixture
def bench_home(monkeypatch, tmp_path) -> Path:
    """The filled workspace at a fixed path, with no cached Hugging Face models listed."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    return fill_workspace(BENCH_HOME)
