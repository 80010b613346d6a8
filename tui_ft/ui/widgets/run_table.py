"""The table of runs: one row a run, updated in place each poll so the cursor never jumps."""

from __future__ import annotations

from textual.widgets import DataTable

from tui_ft.engine.runs.state import RunState
from tui_ft.safe_text import plain
from tui_ft.ui import compat
from tui_ft.views.formatting import format_duration
from tui_ft.views.run_monitor import RunRow

STATE_STYLES = {
    RunState.QUEUED: "dim",
    RunState.RUNNING: "bold green",
    RunState.STOPPING: "yellow",
    RunState.STOPPED: "yellow",
    RunState.FINISHED: "cyan",
    RunState.FAILED: "bold red",
    RunState.DIED: "bold red",
}
COLUMNS = (("mark", " "), ("name", "run"), ("state", "state"), ("method", "method"), ("step", "step"),
           ("progress", "%"), ("eta", "ETA"), ("loss", "loss"))


class RunTable(DataTable):
    """Runs with state, progress, ETA and last loss; marked runs (for overlays) carry a ●."""

    DEFAULT_CSS = """
    RunTable {
        height: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None):  # noqa: A002 - Textual's name
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.marked: set[str] = set()
        self.rows_by_name: dict[str, RunRow] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def _update_dimensions(self, new_rows) -> None:  # a private hook: tui_ft/ui/compat.py
        # Textual measures new and changed cells when the table is next idle, and keys its caches
        # of drawn cells and rows without the column widths: a frame drawn in between (the plots
        # repainting as their pictures arrive) kept rows cut to the old widths ("lor" for
        # "lora-seed") until their next change. A new count starts those caches over.
        super()._update_dimensions(new_rows)
        compat.restart_table_caches(self)
        self.refresh()

    def update_runs(self, rows: list[RunRow], existing: set[str] | None = None) -> None:
        """Show ``rows``: changed cells are updated, new runs added, the others removed.

        ``existing`` names every run in the workspace (default: ``rows``): a run filtered out
        keeps its mark, a deleted one loses it.
        """
        names = [row.info.name for row in rows]
        for gone in set(self.rows_by_name) - set(names):
            self.remove_row(gone)
            del self.rows_by_name[gone]  # kept, the next poll removed the row again and raised
        self.marked &= set(names) if existing is None else existing
        for row in rows:
            name = row.info.name
            cells = self._cells(row)
            if name not in self.rows_by_name:
                self.add_row(*cells.values(), key=name)
            else:
                for column, value in cells.items():
                    if self.get_cell(name, column) != value:
                        self.update_cell(name, column, value, update_width=True)
            self.rows_by_name[name] = row
        if [r.key.value for r in self.ordered_rows] != names:
            # A row added back (the filter cleared, a run renamed) goes to the end: put the rows
            # in the runs' order again, keeping the cursor on its run.
            selected = self.selected_name
            order = {plain(name).plain: index for index, name in enumerate(names)}  # the name cells' text
            self.sort("name", key=lambda cell: order.get(cell.plain, len(order)))
            if selected is not None:
                self.select_name(selected)

    def _cells(self, row: RunRow) -> dict[str, object]:
        info = row.info
        total = info.total_steps
        progress = row.progress
        return {
            "mark": "●" if info.name in self.marked else " ",
            # Text, never a str: DataTable reads a str cell as markup, and these come from the run's files.
            "name": plain(info.name),
            "state": plain(info.state, style=STATE_STYLES.get(info.state, "")),
            "method": plain(info.method),
            "step": f"{info.step}/{total}" if total else str(info.step),
            "progress": f"{progress * 100:.0f}%" if progress is not None else "—",
            "eta": format_duration(row.eta_s) if row.eta_s is not None else "—",
            "loss": f"{row.last_loss:.4f}" if row.last_loss is not None else "—",
        }

    @property
    def selected_name(self) -> str | None:
        """The run under the cursor."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def select_name(self, name: str) -> bool:
        """Move the cursor to run ``name``; False when there is no such row."""
        if name not in self.rows_by_name:
            return False
        self.move_cursor(row=self.get_row_index(name))
        return True

    def toggle_mark(self, name: str) -> bool:
        """Mark or unmark ``name`` for overlays; returns whether it is marked now."""
        if name in self.marked:
            self.marked.discard(name)
        else:
            self.marked.add(name)
        self.update_cell(name, "mark", "●" if name in self.marked else " ")
        return name in self.marked
