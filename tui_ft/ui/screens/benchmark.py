"""The Benchmark pane: models, runs and checkpoints × benchmarks and perplexity datasets, from stored results.

The table is built by :mod:`tui_ft.views.bench_table` in a thread worker; evaluations run as
detached jobs (:func:`~tui_ft.engine.evaluation.start_eval_job`), so they go on when the
dashboard closes. A timer reads the jobs' status files about once a second and shows each
running cell's progress; when a job writes a result, the table is read again.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Static
from textual.worker import Worker, get_current_worker

from tui_ft.engine.evaluation import display_path, start_eval_job, stop_eval_job
from tui_ft.engine.evaluation.jobs import FINAL_STATES
from tui_ft.engine.runs.state import RunState
from tui_ft.safe_text import plain
from tui_ft.ui import keys
from tui_ft.ui.screens.pane import Pane
from tui_ft.ui.widgets.bench_grid import BenchGrid
from tui_ft.ui.widgets.bench_items import BenchItemsScreen
from tui_ft.ui.widgets.bench_picker import ColumnPicker
from tui_ft.ui.widgets.key_footer import KeyFooter
from tui_ft.ui.widgets.pane_tabs import PaneTabs
from tui_ft.views.bench_table import (
    BenchTable,
    Column,
    JobCell,
    Row,
    build_table,
    candidate_columns,
    export_table,
    job_cells,
    list_rows,
    read_jobs,
    sort_columns,
    sort_rows,
    workspace_stamp,
)

POLL_INTERVAL_S = 1.0  # job status files are rewritten at most twice a second
EMPTY_HELP = (
    "No results stored yet. Move the cursor to a model and a column (b goes to the next benchmark or "
    "dataset), then press e or enter to evaluate it as a background job; space marks several rows first."
)
NO_DATASETS = "Nothing to evaluate on: put a benchmark (instruction + expected, or question + answer) in datasets/."


class BenchmarkScreen(Pane):
    """Score models, runs and checkpoints on benchmarks and perplexity; drill in, sort, export."""

    BINDINGS = keys.BENCHMARK_BINDINGS
    AUTO_FOCUS = "#bench-table"
    DEFAULT_CSS = """
    BenchmarkScreen #bench-empty { height: auto; }
    """

    target: reactive[str] = reactive("")
    """The key of the column that evaluations, drill-down and sorting use."""
    sort_key: reactive[str] = reactive("")
    """The key of the column rows are sorted by ('' keeps the listed order)."""
    sort_best_first: reactive[bool] = reactive(True)
    """Sort best first (highest score, lowest perplexity), else worst first."""

    class TableLoaded(Message):
        """Models, datasets and stored results were read."""

        def __init__(self, bench: BenchTable, candidates: list[Column]):
            super().__init__()
            self.bench, self.candidates = bench, candidates

    class JobsPolled(Message):
        """Evaluation jobs' status files were read."""

        def __init__(self, statuses: list[dict], cells: list[JobCell], stamp: tuple):
            super().__init__()
            self.statuses, self.cells, self.stamp = statuses, cells, stamp

    class EvaluationStarted(Message):
        """Detached evaluation jobs were started."""

        def __init__(self, job_dirs: list[Path], rows: list[Row], column: Column):
            super().__init__()
            self.job_dirs, self.rows, self.column = job_dirs, rows, column

    class EvaluationRejected(Message):
        """An evaluation could not start (a bad file or model); ``error`` is one line."""

        def __init__(self, error: str):
            super().__init__()
            self.error = error

    def __init__(self):
        super().__init__()
        self.bench = BenchTable([], [])
        self.candidates: list[Column] = []
        self.marked: set[str] = set()
        self.job_list: list[JobCell] = []
        self.active_jobs: set[str] = set()  # ids of jobs seen queued or running (their end is reported)
        self.final_jobs: set[str] = set()  # ids of jobs that ended: never read again
        self.polling = False
        self.loaded = False
        self.stamp: tuple | None = None  # runs' weights and stored results, as last seen

    def compose(self) -> ComposeResult:
        yield PaneTabs("benchmark")
        yield Static("Benchmark", classes="pane-title")
        yield ColumnPicker(id="bench-controls")
        yield BenchGrid(id="bench-table")
        yield Static("", id="bench-empty", classes="empty-state")
        yield Static("", id="bench-status", classes="status-line")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(BenchGrid).marked = self.marked
        self.poll_timer = self.set_interval(POLL_INTERVAL_S, self.request_poll)

    def on_screen_resume(self) -> None:
        self.load_table()  # runs may have finished or appeared while another pane was shown
        self.request_poll()
        self.poll_timer.resume()

    def on_screen_suspend(self) -> None:
        self.poll_timer.pause()  # another pane is shown: no need to read jobs every second

    # -- workers ---------------------------------------------------------------------------

    @work(thread=True, group="bench-load", exclusive=True, exit_on_error=False, description="Reading benchmark results")
    def load_table(self) -> None:
        home = self.app.home
        candidates = candidate_columns(home)
        bench = build_table(home, rows=list_rows(home, extra_refs=[self.app.model_ref]))
        if not get_current_worker().is_cancelled:
            self.post_message(self.TableLoaded(bench, candidates))

    def request_poll(self) -> None:
        """Read the jobs unless a read is still going (a slow disk must not pile readers up)."""
        if not self.polling:
            self.polling = True
            self.poll_jobs(frozenset(self.final_jobs))

    @work(thread=True, group="bench-poll", exclusive=True, exit_on_error=False, description="Reading evaluation jobs")
    def poll_jobs(self, skip: frozenset[str]) -> None:
        home = self.app.home
        statuses = read_jobs(home, skip)
        cells = [cell for status in statuses for cell in job_cells(status, home)]
        self.post_message(self.JobsPolled(statuses, cells, workspace_stamp(home)))

    @work(thread=True, group="bench-start", exit_on_error=False, description="Starting an evaluation job")
    def start_evaluation(self, rows: list[Row], column: Column) -> None:
        from tui_ft.engine.data.readers import DatasetError
        from tui_ft.engine.models import ModelError

        home = self.app.home
        # Absolute, so a same-named file in the dashboard's current folder is never picked instead.
        path = str(Path(column.path) if Path(column.path).is_absolute() else home / column.path)
        # A benchmark's column under another scorer (from `tui-ft eval --scorer`) is evaluated with that scorer.
        target = ({"benchmark": path, "scorer": column.scorer or None} if column.kind == "benchmark"
                  else {"reward_prompts": path, "reward": column.scorer} if column.kind == "reward"
                  else {"perplexity_path": path})
        by_checkpoint: dict[str | None, list[str]] = {}
        for row in rows:  # one job per checkpoint name: a job evaluates one checkpoint of its refs
            by_checkpoint.setdefault(row.checkpoint, []).append(row.ref)
        job_dirs = []
        try:
            for checkpoint, refs in by_checkpoint.items():
                job_dirs.append(start_eval_job(home, refs, checkpoint=checkpoint, **target))
        except (DatasetError, ModelError, ValueError, OSError) as error:
            self.post_message(self.EvaluationRejected(str(error).splitlines()[0] if str(error) else type(error).__name__))
        if job_dirs:
            self.post_message(self.EvaluationStarted(job_dirs, rows, column))

    def worker_failed(self, worker: Worker) -> None:
        if worker.group == "bench-poll":
            self.polling = False

    # -- results and jobs ------------------------------------------------------------------

    @on(TableLoaded)
    def table_loaded(self, message: TableLoaded) -> None:
        self.bench, self.candidates = message.bench, message.candidates
        self.marked &= {row.key for row in self.bench.rows}
        options = self.column_options()
        if self.target not in {c.key for c in options}:
            # A benchmark with results, else a benchmark file, else anything scorable as one.
            preferred = [*self.bench.columns, *(c for c in self.candidates if c.file_format == "benchmark"), *options]
            self.target = next((c.key for c in preferred if c.kind == "benchmark"), options[0].key if options else "")
        self.sync_select()
        self.redraw()
        if not self.loaded:  # the first time, start on the column evaluations would go to
            self.loaded = True
            self.query_one(BenchGrid).move_to(column=self.target_column())

    @on(JobsPolled)
    def jobs_polled(self, message: JobsPolled) -> None:
        self.polling = False
        # A result written (by a job, or `tui-ft eval`), a new checkpoint or finished run: read again.
        reload = self.stamp is not None and message.stamp != self.stamp
        self.stamp = message.stamp
        for status in message.statuses:
            if status["state"] not in FINAL_STATES:
                self.active_jobs.add(status["id"])
                continue
            self.final_jobs.add(status["id"])
            if status["id"] in self.active_jobs:
                self.active_jobs.discard(status["id"])
                self.report_end(status)
                reload = True
        columns_before = self.visible_columns()
        self.job_list = message.cells
        if self.visible_columns() != columns_before:  # a job started elsewhere writes to a new column
            self.sync_select()
            self.redraw()
        else:
            self.query_one(BenchGrid).set_jobs(self.job_overlay())
        self.update_status()
        if reload:
            self.load_table()

    def report_end(self, status: dict) -> None:
        """Say how a job the pane saw running ended."""
        job = status.get("job") or {}
        what = ", ".join(Path(p).name for p in job.get("benchmarks", []) + job.get("perplexity", []))
        if job.get("reward_prompts"):
            judged = ", ".join(Path(p).name for p in job["reward_prompts"])
            what = ", ".join(filter(None, [what, f"{judged} (reward model {Path(job.get('reward') or '?').name})"]))
        if job.get("scorer"):
            what += f" (scorer {job['scorer']})"
        models = ", ".join(job.get("refs", []))
        if job.get("checkpoint"):
            models += f" · {job['checkpoint']}"
        if status["state"] == RunState.FINISHED:
            self.notify(f"Evaluated {models} on {what}.", title="Evaluation finished")
        elif status["state"] == RunState.STOPPED:
            self.notify(f"Stopped evaluating {models} on {what}.", severity="warning")
        else:
            log = display_path(Path(status.get("dir", "")) / "worker.log", self.app.home)
            self.notify(f"{models} on {what}: {status.get('message') or status['state']} (see {log})",
                        title=f"Evaluation {status['state']}", severity="error", timeout=10)

    def column_options(self) -> list[Column]:
        """Every column the picker offers: scorable files in datasets/, and columns with results or jobs."""
        return sort_columns([*self.candidates, *self.bench.columns, *(cell.column for cell in self.job_list)])

    def sync_select(self) -> None:
        """Show the current options and target in the column picker."""
        self.query_one(ColumnPicker).show(self.column_options(), self.target)

    def visible_columns(self) -> list[Column]:
        """Columns with results, those running jobs write to, and the picked one (even empty)."""
        picked = [self.target_column_from_key()] if self.target else []
        return sort_columns([*self.bench.columns, *(cell.column for cell in self.job_list), *picked])

    def job_overlay(self) -> dict[tuple[str, str], JobCell]:
        """Job progress keyed by the table's row and column keys."""
        overlay = {}
        for cell in self.job_list:
            row = self.bench.find_row(cell.ref, cell.checkpoint)
            if row is not None:
                overlay[(row.key, cell.column.key)] = cell
        return overlay

    # -- view ------------------------------------------------------------------------------

    def target_column(self) -> Column | None:
        """The column under the cursor, else the one picked in the selector."""
        grid = self.query_one(BenchGrid)
        current = grid.current_column() if grid.row_count else None
        if current is not None:
            return current
        return self.target_column_from_key() if self.target else None

    def ordered_rows(self) -> list[Row]:
        """The rows in display order: sorted by ``sort_key`` when set."""
        column = next((c for c in self.visible_columns() if c.key == self.sort_key), None)
        if column is None:
            return list(self.bench.rows)
        return sort_rows(self.bench, self.bench.rows, column, self.sort_best_first)

    def redraw(self) -> None:
        """Draw the table, the empty-state help and the status line."""
        grid = self.query_one(BenchGrid)
        grid.jobs = self.job_overlay()
        grid.show(BenchTable(self.bench.rows, self.visible_columns(), self.bench.cells), self.ordered_rows())
        self.update_status()

    def update_status(self) -> None:
        """The empty-state help (until something is stored or running) and the status line."""
        empty = self.query_one("#bench-empty", Static)
        empty.display = not self.bench.cells and not self.job_list
        empty.update(EMPTY_HELP if self.candidates or self.bench.columns else NO_DATASETS)
        parts = []
        if self.marked:
            parts.append(f"{len(self.marked)} marked")
        running = [c for c in self.job_list if c.state != RunState.QUEUED]
        if running:
            first = running[0]
            parts.append(f"evaluating {first.ref}{' · ' + first.checkpoint if first.checkpoint else ''} on "
                         f"{Path(first.column.path).name}: {first.done}/{first.total}")
        queued = len(self.job_list) - len(running)
        if queued:
            parts.append(f"{queued} queued")
        column = next((c for c in self.visible_columns() if c.key == self.sort_key), None)
        if column is not None:
            parts.append(f"sorted by {column.label}, {'best' if self.sort_best_first else 'worst'} first")
        self.query_one("#bench-status", Static).update(plain(" · ".join(parts)))  # names from files: never markup

    @on(ColumnPicker.ColumnPicked)
    def column_picked(self, event: ColumnPicker.ColumnPicked) -> None:
        if event.key == self.target:
            return
        self.set_target(event.key)
        self.query_one(BenchGrid).move_to(column=self.target_column_from_key())
        self.query_one(BenchGrid).focus()

    def target_column_from_key(self) -> Column:
        """The column the selector names."""
        return Column.from_key(self.target)

    def set_target(self, key: str) -> None:
        """Pick the column evaluations go to; an empty column picked before goes away."""
        before = self.visible_columns()
        self.target = key
        if self.visible_columns() != before:
            self.redraw()

    @on(DataTable.CellHighlighted, "#bench-table")
    def cell_highlighted(self, event: DataTable.CellHighlighted) -> None:
        column = self.query_one(BenchGrid).current_column()
        if column is not None and column.key != self.target:
            self.set_target(column.key)
            self.sync_select()

    @on(DataTable.CellSelected, "#bench-table")
    def cell_selected(self, event: DataTable.CellSelected) -> None:
        grid, column = self.query_one(BenchGrid), self.target_column()
        row = grid.current_row()
        if row is None or column is None:
            return
        if self.bench.cell(row, column) is not None:
            self.action_drill()
        elif (row.key, column.key) in grid.jobs:
            self.notify(f"{row.label} on {column.label}: {grid.jobs[(row.key, column.key)].text}")
        else:
            self.action_evaluate()

    # -- actions ---------------------------------------------------------------------------

    def action_evaluate(self) -> None:
        """Start a detached job for the marked rows (or the current row) on the current column."""
        grid, column = self.query_one(BenchGrid), self.target_column()
        if column is None:
            self.notify(NO_DATASETS, severity="warning")
            return
        rows = [row for row in self.bench.rows if row.key in self.marked] or [r for r in [grid.current_row()] if r]
        running = [row for row in rows if (row.key, column.key) in grid.jobs]
        if running:
            self.notify(f"Already evaluating {', '.join(r.label for r in running)} on {column.label}.")
        rows = [row for row in rows if row not in running]
        if rows:
            self.start_evaluation(rows, column)

    @on(EvaluationStarted)
    def evaluation_started(self, message: EvaluationStarted) -> None:
        self.active_jobs |= {Path(job_dir).name for job_dir in message.job_dirs}
        names = ", ".join(row.label for row in message.rows)
        column = message.column
        what = (f"perplexity of {Path(column.path).name}" if column.kind == "perplexity"
                else f"{Path(column.path).name} (reward model {column.scorer})" if column.kind == "reward"
                else f"{Path(column.path).name}{f' (scorer {column.scorer})' if column.scorer else ''}")
        self.notify(f"Evaluating {names} on {what} in the background.", title="Evaluation started")
        started = {row.key for row in message.rows}
        if self.marked & started:
            self.marked -= started
            self.redraw()
        self.request_poll()

    @on(EvaluationRejected)
    def evaluation_rejected(self, message: EvaluationRejected) -> None:
        self.notify(message.error, title="Cannot evaluate", severity="error", timeout=10)

    def action_mark(self) -> None:
        """Mark or unmark the current row, then move down (to mark the next one quickly)."""
        grid = self.query_one(BenchGrid)
        row = grid.current_row()
        if row is None:
            return
        self.marked ^= {row.key}
        grid.redraw_row(row)
        grid.action_cursor_down()
        self.update_status()

    def action_next_column(self) -> None:
        """Go to the next benchmark or dataset (adding its column when it is empty)."""
        options = self.column_options()
        if not options:
            self.notify(NO_DATASETS, severity="warning")
            return
        keys_ = [c.key for c in options]
        current = self.target_column()
        index = keys_.index(current.key) + 1 if current is not None and current.key in keys_ else 0
        self.query_one(ColumnPicker).pick(keys_[index % len(keys_)])

    def action_drill(self) -> None:
        """Show every item of the current cell."""
        grid, column = self.query_one(BenchGrid), self.target_column()
        row = grid.current_row()
        record = self.bench.cell(row, column) if row is not None and column is not None else None
        if record is None:
            self.notify("Nothing stored in this cell yet: press e to evaluate it.", severity="warning")
            return
        self.app.push_screen(BenchItemsScreen(record, row.label))

    def action_sort(self) -> None:
        """Sort by the current column, best first; the same column again flips the order."""
        column = self.target_column()
        if column is None:
            return
        if self.sort_key == column.key:
            self.sort_best_first = not self.sort_best_first
        else:
            self.sort_key, self.sort_best_first = column.key, True
        self.redraw()

    def action_export(self) -> None:
        """Write the table, as shown, to CSV and JSON under ``bench/exports/``."""
        grid = self.query_one(BenchGrid)
        try:
            csv_path, json_path = export_table(self.bench, self.app.home, rows=grid.order)
        except OSError as error:
            self.notify(f"Export failed: {error}", severity="error")
            return
        home = self.app.home
        self.notify(f"{len(grid.order)} rows written to {display_path(csv_path, home)} and "
                    f"{display_path(json_path, home)}", title="Exported", timeout=8)

    def action_stop(self) -> None:
        """Stop the job evaluating the current cell."""
        grid, column = self.query_one(BenchGrid), self.target_column()
        row = grid.current_row()
        cell = grid.jobs.get((row.key, column.key)) if row is not None and column is not None else None
        if cell is None:
            self.notify("No evaluation is running in this cell.", severity="warning")
            return
        if stop_eval_job(Path(cell.job_dir)):
            self.notify(f"Stopping the evaluation of {row.label} (it stops between items).")

    def action_reload(self) -> None:
        """Read models, datasets and results again."""
        self.load_table()
        self.request_poll()
