"""The Benchmark table, headless: who was scored on what, built from the stored results.

Rows are models, runs and their intermediate checkpoints; columns are benchmarks (score, 0..1),
perplexity datasets, and prompt sheets judged by a reward model (the mean reward of the replies,
one column per sheet and reward model). A benchmark scored with a scorer other than its default (``tui-ft eval
--scorer exact``) gets a column of its own, so a 0% under ``exact`` never hides a 100% under
``contains``. Cells are stored result records (:func:`tui_ft.engine.evaluation.store.load_results`),
the newest winning when several share a cell (other templates or generation settings). Running evaluation jobs are read from their
status files and spread over the cells they will fill. Sorting and CSV/JSON export live here
too, so the Benchmark pane only draws; nothing here scores anything.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from tui_ft.engine.evaluation import default_scorer, display_path
from tui_ft.engine.evaluation.jobs import FINAL_STATES, jobs_dir, read_job_status
from tui_ft.engine.evaluation.store import EXPORTS_FOLDER, VALUE_KEYS, load_results, result_files
from tui_ft.engine.files import open_no_follow, warn_skipped, write_json_atomic
from tui_ft.engine.runs.state import RunState

BENCHMARK_FORMATS = ("benchmark", "qa", "instruction")  # files benchmark_items can read
# Offered as score columns: questions with answers. An instruction set scored "contains its
# reply" measures nothing useful (a reply is a paragraph, not an answer), so it is offered for
# perplexity only; `tui-ft eval --benchmark` still reads one when asked.
OFFERED_BENCHMARK_FORMATS = ("benchmark", "qa")
PERPLEXITY_FORMATS = ("instruction", "qa", "chat")  # supervised files: replies to score
KIND_ORDER = {"benchmark": 0, "perplexity": 1, "reward": 2}  # the columns' order, left to right


@dataclass(frozen=True)
class Column:
    """A benchmark (under one scorer) or a perplexity dataset, named as results name it (relative to the workspace).

    Attributes:
        scorer: ``""`` for a benchmark's default scorer (``choice`` when every item has choices,
            else ``contains``: what ``tui-ft eval`` uses without ``--scorer``) and for perplexity;
            else the other scorer (``exact``...), which gets a column of its own. For a
            ``reward`` column: the reward run's name.
    """

    kind: str  # "benchmark", "perplexity" or "reward"
    path: str
    file_format: str = field(default="", compare=False)  # the file's format, when read from datasets/
    scorer: str = ""

    @property
    def key(self) -> str:
        """A stable id: ``benchmark:datasets/seed_benchmark.jsonl``, ``benchmark+exact:datasets/seed_benchmark.jsonl``."""
        return f"{self.kind}+{self.scorer}:{self.path}" if self.scorer else f"{self.kind}:{self.path}"

    @classmethod
    def from_key(cls, key: str) -> Column:
        """The column a :attr:`key` names."""
        kind, path = key.split(":", 1)
        kind, _, scorer = kind.partition("+")
        return cls(kind, path, scorer=scorer)

    @property
    def label(self) -> str:
        """The header: the file's stem, then the scorer unless default, then ``%`` for a score or ``ppl``;
        for a reward model's judgement, ``reward:`` and its run."""
        if self.kind == "reward":
            return f"{Path(self.path).stem} reward:{self.scorer}"
        if self.kind != "benchmark":
            return f"{Path(self.path).stem} ppl"
        return f"{Path(self.path).stem} {self.scorer} %" if self.scorer else f"{Path(self.path).stem} %"


@dataclass(frozen=True)
class Row:
    """A model, a run's final weights, or a run's intermediate checkpoint.

    Attributes:
        ref: The reference evaluation jobs are started with (``default``, a run name, a folder).
        identity: What results call the weights (their ``model_id``: ``run:/abs/run``...).
        checkpoint: ``step-N`` for an intermediate checkpoint, else ``None``.
        kind: ``model``, ``run`` or ``checkpoint``.
        label: What the table shows.
    """

    ref: str
    identity: str
    checkpoint: str | None
    kind: str
    label: str

    @property
    def key(self) -> str:
        """A stable id for the row."""
        return f"{self.identity}@{self.checkpoint or ''}"


@dataclass
class BenchTable:
    """Rows × columns with the stored result of each filled cell (keyed by row and column keys)."""

    rows: list[Row]
    columns: list[Column]
    cells: dict[tuple[str, str], dict] = field(default_factory=dict)

    def cell(self, row: Row, column: Column) -> dict | None:
        """The stored result in a cell, or ``None``."""
        return self.cells.get((row.key, column.key))

    def value(self, row: Row, column: Column) -> float | None:
        """The number a cell sorts by: the score (0..1), the perplexity or the mean reward."""
        record = self.cell(row, column)
        if record is None:
            return None
        return record.get(VALUE_KEYS[column.kind])

    def find_row(self, ref: str, checkpoint: str | None) -> Row | None:
        """The row a job's reference names (a run may be named by its folder path too)."""
        for row in self.rows:
            if row.checkpoint == checkpoint and (row.ref == ref or row.identity == f"run:{_resolved(ref)}"):
                return row
        return None


def _resolved(path: str) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except OSError:
        return path


def sort_columns(columns) -> list[Column]:
    """Benchmarks first, then perplexity datasets, then rewards, each by path; a benchmark's default scorer before its others."""
    return sorted(set(columns), key=lambda c: (KIND_ORDER.get(c.kind, 3), c.path, c.scorer))


@lru_cache(maxsize=256)
def _file_default_scorer(path: str, mtime_ns: int) -> str:
    from tui_ft.engine.data import benchmark_items, load_dataset

    return default_scorer(benchmark_items(load_dataset(path, strict=False)))


def file_default_scorer(path: str, home: Path) -> str:
    """The default scorer of the benchmark at ``path`` (relative to ``home`` or absolute); ``contains`` when unreadable."""
    resolved = Path(path) if Path(path).is_absolute() else Path(home) / path
    try:
        return _file_default_scorer(str(resolved), resolved.stat().st_mtime_ns)
    except Exception:  # a benchmark deleted since: its results still show, under the usual default
        return "contains"


def benchmark_column(path: str, scorer: str | None, home: Path) -> Column:
    """The column for ``path`` scored by ``scorer``: the plain one for its default scorer (or ``None``), else its own."""
    if scorer and scorer != file_default_scorer(path, home):
        return Column("benchmark", path, scorer=scorer)
    return Column("benchmark", path)


def column_of(record: dict, home: Path) -> Column:
    """The column a result record belongs to (records without a ``scorer`` go to the default one)."""
    if record["kind"] == "benchmark":
        return benchmark_column(record["benchmark"], record.get("scorer"), home)
    if record["kind"] == "reward":
        return Column("reward", record["prompts"], scorer=record["reward_model_name"])
    return Column("perplexity", record["dataset"])


def model_identity(model: dict, home: Path) -> str:
    """What results call the weights of a :func:`~tui_ft.engine.models.list_models` entry.

    It mirrors ``ModelSession.identity`` without resolving anything (no model is converted).
    """
    if model["kind"] == "run":
        return f"run:{(Path(home) / 'checkpoints' / model['ref']).resolve()}"
    adapter = f"+{model['adapter']}" if model.get("adapter") else ""
    return f"{model['kind']}:{model['path']}{adapter}"


def _row_for_record(record: dict) -> Row:
    """A row for a result whose model is not listed (a folder evaluated from the CLI)."""
    identity = record.get("model_id") or f"ref:{record['model']}"
    ref = record["model"]
    if identity.startswith("folder:") and "+" not in identity:
        ref = identity.split(":", 1)[1]  # absolute: the CLI may have been given a relative path
    label = Path(ref).name if "/" in ref else ref
    checkpoint = record.get("checkpoint")
    return Row(ref, identity, checkpoint, "checkpoint" if checkpoint else "model",
               f"{label} · {checkpoint}" if checkpoint else label)


def list_rows(home: Path, models: list[dict] | None = None, extra_refs=()) -> list[Row]:
    """Models first, then each run (its final weights if any, then its checkpoints in step order).

    Args:
        home: The workspace.
        models: :func:`~tui_ft.engine.models.list_models` output (read when ``None``).
        extra_refs: More model references to list (a folder the dashboard was opened on).
    """
    from tui_ft.engine.models import list_models
    from tui_ft.engine.runs import list_checkpoints

    home = Path(home)
    models = list_models(home) if models is None else models
    rows = [Row(m["ref"], model_identity(m, home), None, "model", m["ref"]) for m in models if m["kind"] != "run"]
    finals = {m["ref"]: m for m in models if m["kind"] == "run"}
    runs = sorted(p for p in (home / "checkpoints").glob("*/run.json"))
    for run_file in runs:
        name = run_file.parent.name
        identity = model_identity({"ref": name, "kind": "run"}, home)
        if name in finals:
            rows.append(Row(name, identity, None, "run", name))
        for checkpoint in list_checkpoints(run_file.parent):
            rows.append(Row(name, identity, checkpoint.name, "checkpoint", f"{name} · {checkpoint.name}"))
    known = {row.ref for row in rows}
    for ref in extra_refs:
        if ref and ref not in known and Path(ref).expanduser().is_dir():
            path = str(Path(ref).expanduser().resolve())
            rows.append(Row(path, f"folder:{path}", None, "model", Path(path).name))
    return rows


def build_table(home: Path, results: list[dict] | None = None, rows: list[Row] | None = None,
                columns=()) -> BenchTable:
    """The table: every row, a column for each benchmark and dataset with results, and ``columns``.

    Args:
        home: The workspace.
        results: Stored results (read with ``load_results`` when ``None``).
        rows: The rows (:func:`list_rows` when ``None``); results of unlisted models add rows.
        columns: Columns to show even when empty.
    """
    results = load_results(home) if results is None else results
    rows = list(list_rows(home) if rows is None else rows)
    by_identity = {(row.identity, row.checkpoint): row for row in rows}
    by_ref = {(row.ref, row.checkpoint): row for row in rows}
    cells, found = {}, set(columns)
    for record in results:  # oldest first: the newest result of a cell wins
        checkpoint = record.get("checkpoint")
        row = by_identity.get((record.get("model_id"), checkpoint)) or by_ref.get((record.get("model"), checkpoint))
        if row is None:
            row = _row_for_record(record)
            rows.append(row)
            by_identity[(row.identity, checkpoint)] = row
        column = column_of(record, home)
        found.add(column)
        cells[(row.key, column.key)] = record
    return BenchTable(rows, sort_columns(found), cells)


def cell_text(record: dict | None) -> str:
    """A cell's text: ``60.0%`` for a score, ``12.34`` for a perplexity, ``+1.23`` for a mean reward, empty for nothing."""
    if record is None:
        return ""
    if record["kind"] == "benchmark":
        return f"{100 * record['score']:.1f}%"
    if record["kind"] == "reward":
        return f"{record['reward']:+.2f}"
    value = record["perplexity"]
    return f"{value:.2f}" if value < 10_000 else f"{value:.3g}"


def sort_rows(table: BenchTable, rows: list[Row], column: Column, best_first: bool = True) -> list[Row]:
    """``rows`` ordered by ``column``: best first (highest score or reward, lowest perplexity) or worst first.

    Empty cells always go last; ties keep their order.
    """
    higher_is_better = column.kind != "perplexity"
    descending = higher_is_better == best_first
    filled = [row for row in rows if table.value(row, column) is not None]
    empty = [row for row in rows if table.value(row, column) is None]
    return sorted(filled, key=lambda row: table.value(row, column), reverse=descending) + empty


def candidate_columns(home: Path) -> list[Column]:
    """What can be evaluated from ``datasets/``: valid benchmark-like files, SFT files for perplexity, and
    prompt sheets for each finished reward model to judge."""
    from tui_ft.engine.data import find_datasets, load_dataset
    from tui_ft.engine.models import list_reward_models

    found, judges = [], list_reward_models(home)
    for path in find_datasets(Path(home) / "datasets"):
        try:
            dataset = load_dataset(path, strict=False)
        except Exception:  # an unreadable file is the Datasets pane's business, not a column
            continue
        if dataset.problems or not len(dataset):
            continue
        shown = display_path(path, home)
        if dataset.format in OFFERED_BENCHMARK_FORMATS:
            found.append(Column("benchmark", shown, dataset.format))
        if dataset.format in PERPLEXITY_FORMATS:
            found.append(Column("perplexity", shown, dataset.format))
        if dataset.format == "prompts":
            found += [Column("reward", shown, dataset.format, scorer=judge) for judge in judges]
    return sort_columns(found)


# -- running jobs ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobCell:
    """A cell a running job will fill, with that cell's share of the job's progress."""

    job_dir: str
    ref: str
    checkpoint: str | None
    column: Column
    state: str  # a RunState: queued (not started yet), running or stopping
    done: int
    total: int

    @property
    def text(self) -> str:
        """``running 3/20``, ``stopping 3/20`` or ``queued``."""
        return "queued" if self.state == RunState.QUEUED else f"{self.state} {self.done}/{self.total}"


@lru_cache(maxsize=256)
def _task_size(kind: str, path: str, mtime_ns: int) -> int:
    from tui_ft.engine.data import benchmark_items, load_dataset, prompt_items, sft_examples

    dataset = load_dataset(path, strict=False)
    items = {"benchmark": benchmark_items, "reward": prompt_items}.get(kind, sft_examples)
    return len(items(dataset))


def task_size(kind: str, path: Path) -> int:
    """How many items a job scores in a file (0 when it cannot be read)."""
    try:
        return _task_size(kind, str(path), Path(path).stat().st_mtime_ns)
    except Exception:
        return 0


def job_cells(status: dict, home: Path) -> list[JobCell]:
    """The cells a job (as :func:`~tui_ft.engine.evaluation.jobs.read_job_status` reads it) has yet to fill.

    A job scores every reference on every file in order, and its status counts items over the
    whole plan; each cell gets its part of that count. Cells whose result is written are left out.
    A job whose files hold values of the wrong types (damaged, or written by hand) has no cells:
    it is named once on stderr, and the other jobs are shown.
    """
    try:
        return _job_cells(status, home)
    except (TypeError, ValueError, AttributeError, KeyError) as error:
        warn_skipped(Path(str(status.get("dir", ""))) / "status.json", f"malformed evaluation job: {error}")
        return []


def _job_cells(status: dict, home: Path) -> list[JobCell]:
    if status.get("state") in FINAL_STATES:
        return []
    job = status.get("job") or {}
    refs, checkpoint = job.get("refs", []), job.get("checkpoint")
    tasks = [("benchmark", p) for p in job.get("benchmarks", [])] + [("perplexity", p) for p in job.get("perplexity", [])]
    tasks += [("reward", p) for p in job.get("reward_prompts", [])]
    sizes = [task_size(kind, Path(p)) for kind, p in tasks]
    finished = {(r.get("model"), r.get("benchmark") or r.get("dataset") or r.get("prompts"))
                for r in status.get("results", [])}
    state = status.get("state", RunState.QUEUED)
    done, start, cells, current_seen = status.get("done", 0), 0, [], False
    for ref in refs:
        for (kind, path), size in zip(tasks, sizes, strict=False):
            shown = display_path(Path(path), home)
            column = (benchmark_column(shown, job.get("scorer"), home) if kind == "benchmark"
                      else Column(kind, shown, scorer=Path(job.get("reward") or "").name) if kind == "reward"
                      else Column(kind, shown))
            share, start = max(0, min(done - start, size)), start + size
            if (ref, column.path) in finished:
                continue
            if state == RunState.QUEUED or (current_seen and share == 0):
                cells.append(JobCell(status.get("dir", ""), ref, checkpoint, column, RunState.QUEUED, 0, size))
            else:  # the cell being scored now (or scored, its result about to be written)
                current_seen = current_seen or share < size
                cells.append(JobCell(status.get("dir", ""), ref, checkpoint, column, state, share, size))
    return cells


def read_jobs(home: Path, skip: set[str] = frozenset()) -> list[dict]:
    """The status of every job in the workspace except those whose id is in ``skip`` (known to be over)."""
    folder = jobs_dir(home)
    dirs = sorted(p for p in folder.iterdir() if p.name not in skip and (p / "job.json").is_file()) if folder.is_dir() else []
    return [read_job_status(d) for d in dirs]


def workspace_stamp(home: Path) -> tuple:
    """Changes when a run gains weights or a checkpoint, or a result is written (cheap: names and times).

    The pane polls it to refresh the table for work done elsewhere (training, ``tui-ft eval``).
    """
    home = Path(home)
    runs = sorted(str(p) for pattern in ("*/ckpt/step-*", "*/adapter", "*/model") for p in (home / "checkpoints").glob(pattern))
    results = []
    for path in result_files(home):
        try:
            results.append((str(path), path.stat().st_mtime_ns))
        except OSError:  # replaced while we looked
            continue
    return tuple(runs), tuple(sorted(results))


# -- export -------------------------------------------------------------------------------


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads a cell starting so as a formula


def csv_cell(value):
    """A CSV cell that a spreadsheet shows as text: text starting with ``= + - @``, a tab or a CR
    gets a leading single quote (OWASP's advice against CSV injection). Numbers are kept as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _cell_export(record: dict) -> dict:
    keys = {"benchmark": ("score", "n", "scorer", "score_norm"), "perplexity": ("perplexity", "tokens", "nll"),
            "reward": ("reward", "n", "reward_model_name")}[record["kind"]]
    return {k: record[k] for k in (*keys, "template", "created") if k in record}


def export_table(table: BenchTable, home: Path, rows: list[Row] | None = None,
                 destination: str | Path | None = None) -> tuple[Path, Path]:
    """Write the table as CSV and JSON; returns both paths.

    The CSV has ``model``, ``checkpoint``, then one column a benchmark and scorer (score in %,
    as shown) or dataset (perplexity). The JSON keeps the raw values: ``score`` 0..1 and ``n``,
    or ``perplexity`` and ``tokens``, with the scorer and template; a column's ``scorer`` is
    ``null`` for a benchmark's default scorer.

    Args:
        table: The table.
        home: The workspace (the default destination is ``<home>/bench/exports/``).
        rows: The rows in the order to write (the table's order when ``None``).
        destination: A folder, or a file path whose suffix is replaced by ``.csv`` and ``.json``.
    """
    rows = table.rows if rows is None else rows
    stem = f"bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if destination is None:
        base = Path(home) / "bench" / EXPORTS_FOLDER / stem
    else:
        destination = Path(destination).expanduser()
        base = destination / stem if destination.is_dir() or not destination.suffix else destination.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = base.with_name(base.name + ".csv"), base.with_name(base.name + ".json")
    # Never through a link at the destination (a planted one would overwrite its target).
    with open(open_no_follow(csv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        # Labels and names come from result files and folder names someone else may have written.
        writer.writerow([csv_cell(cell) for cell in ["model", "checkpoint", *(c.label for c in table.columns)]])
        for row in rows:
            values = [table.value(row, c) for c in table.columns]
            shown = [("" if v is None else round(100 * v, 2) if c.kind == "benchmark" else round(v, 4))
                     for v, c in zip(values, table.columns, strict=False)]
            writer.writerow([csv_cell(row.ref), csv_cell(row.checkpoint or ""), *shown])
    document = {
        "columns": [{"key": c.key, "kind": c.kind, "path": c.path, "label": c.label, "scorer": c.scorer or None}
                    for c in table.columns],
        "rows": [{"model": row.ref, "checkpoint": row.checkpoint, "label": row.label, "kind": row.kind,
                  "cells": {c.key: _cell_export(r) for c in table.columns if (r := table.cell(row, c))}}
                 for row in rows],
    }
    write_json_atomic(json_path, document)
    return csv_path, json_path


__all__ = [
    "BenchTable", "Column", "JobCell", "Row", "benchmark_column", "build_table", "candidate_columns", "cell_text",
    "column_of", "export_table", "file_default_scorer", "job_cells", "list_rows", "read_jobs", "sort_columns",
    "sort_rows", "task_size", "workspace_stamp",
]
