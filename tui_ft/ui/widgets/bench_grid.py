"""The Benchmark table widget: draws a :class:`~tui_ft.views.bench_table.BenchTable` with marks and job progress.

It only draws; what the cells hold and how rows sort come from the engine. Row and column
keys are the engine's ``Row.key`` and ``Column.key``, so progress updates touch single cells.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from tui_ft.safe_text import clean, plain
from tui_ft.views.bench_table import BenchTable, Column, JobCell, Row, cell_text

MODEL_COLUMN = "model"


class BenchGrid(DataTable):
    """Rows × columns of scores; a cell cursor picks the row and the benchmark at once."""

    DEFAULT_CSS = """
    BenchGrid { height: 1fr; }
    """

    def __init__(self, **kwargs):
        super().__init__(cursor_type="cell", zebra_stripes=True, **kwargs)
        self.bench = BenchTable([], [])
        self.order: list[Row] = []
        self.marked: set[str] = set()
        self.jobs: dict[tuple[str, str], JobCell] = {}

    # -- what is under the cursor ----------------------------------------------------------

    def current_row(self) -> Row | None:
        """The row under the cursor."""
        row = self.cursor_coordinate.row
        return self.order[row] if self.order and 0 <= row < len(self.order) else None

    def current_column(self) -> Column | None:
        """The benchmark or dataset under the cursor (``None`` on the model names)."""
        column = self.cursor_coordinate.column - 1
        return self.bench.columns[column] if 0 <= column < len(self.bench.columns) else None

    def move_to(self, row: Row | None = None, column: Column | None = None) -> None:
        """Put the cursor on ``row`` and ``column`` (each kept as it is when ``None``)."""
        index = self.cursor_coordinate.row
        if row is not None and row in self.order:
            index = self.order.index(row)
        column_index = self.cursor_coordinate.column
        if column is not None and column in self.bench.columns:
            column_index = self.bench.columns.index(column) + 1
        self.move_cursor(row=index, column=column_index)

    # -- drawing ---------------------------------------------------------------------------

    def label(self, row: Row) -> Text:
        """The model cell: a dot when marked; checkpoints dimmer than final weights."""
        text = Text("● " if row.key in self.marked else "  ", style="bold yellow")
        text.append(clean(row.label), style="dim" if row.kind == "checkpoint" else "bold" if row.key in self.marked else "")
        return text

    def cell(self, row: Row, column: Column) -> Text:
        """A score cell: a running job's progress, else the stored value, else nothing."""
        job = self.jobs.get((row.key, column.key))
        if job is not None:
            return Text(clean(job.text), style="yellow", justify="right")
        return Text(cell_text(self.bench.cell(row, column)), justify="right")

    def show(self, bench: BenchTable, order: list[Row]) -> None:
        """Redraw everything, keeping the cursor on the same row and column when they still exist."""
        row, column = self.current_row(), self.current_column()
        self.bench, self.order = bench, order
        self.clear(columns=True)
        self.add_column("model", key=MODEL_COLUMN)
        for col in bench.columns:
            self.add_column(plain(col.label), key=col.key)  # a file's name: a str label would be read as markup
        for r in order:
            self.add_row(self.label(r), *(self.cell(r, c) for c in bench.columns), key=r.key)
        self.move_to(row if row in order else None, column)

    def redraw_row(self, row: Row) -> None:
        """Redraw one row (its mark changed)."""
        self.update_cell(row.key, MODEL_COLUMN, self.label(row), update_width=True)

    def set_jobs(self, jobs: dict[tuple[str, str], JobCell]) -> None:
        """Show job progress; cells whose job ended go back to their stored value."""
        changed = {key for key in jobs.keys() | self.jobs.keys() if jobs.get(key) != self.jobs.get(key)}
        self.jobs = jobs
        rows = {r.key: r for r in self.order}
        columns = {c.key: c for c in self.bench.columns}
        for row_key, column_key in changed:
            if row_key in rows and column_key in columns:
                self.update_cell(row_key, column_key, self.cell(rows[row_key], columns[column_key]), update_width=True)

