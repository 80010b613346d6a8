"""The Runs pane: every run live, with plots of the selected run's whole history.

A timer asks a thread worker to poll about once a second: it reads the small status files
of every run, tails ``metrics.jsonl`` of the watched runs (the selected one and the marked
ones) from where it stopped, samples the worker's CPU, memory and GPU, and posts one
:class:`RunsScreen.RunsPolled` message. Only one poll runs at a time, so the tails need no
lock; the series they fill are append-only, so the plots read them without copies. Training
itself runs in detached worker processes: closing this pane changes nothing.
"""

from __future__ import annotations

import subprocess
from collections import OrderedDict
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import ContentSwitcher, DataTable, Input, Static
from textual.worker import Worker, get_current_worker

from tui_ft.engine.runs import RunError, delete_run, read_run_config, resume_run, stop_run
from tui_ft.engine.runs.state import LIVE_STATES, RESUMABLE_STATES, RunState
from tui_ft.safe_text import clean
from tui_ft.ui import keys
from tui_ft.ui.screens.pane import Pane
from tui_ft.ui.widgets.export_dialog import ExportChoice, ExportDialog
from tui_ft.ui.widgets.key_footer import KeyFooter
from tui_ft.ui.widgets.metric_plots import MetricPlot, plots_for
from tui_ft.ui.widgets.pane_tabs import PaneTabs
from tui_ft.ui.widgets.run_dialogs import ConfigDiffScreen, ConfirmDelete, RenameDialog
from tui_ft.ui.widgets.run_table import RunTable
from tui_ft.ui.widgets.train_form import TrainForm
from tui_ft.views.formatting import format_bytes
from tui_ft.views.run_monitor import (
    RunHistory,
    RunRow,
    Series,
    WorkerMonitor,
    WorkerUsage,
    log_tail,
    run_matches,
    run_rows,
)


def export_cli(home: Path, name: str, flags: list[str]) -> str:
    """Run ``tui-ft export NAME FLAGS...`` in a child process; returns an error line or ``""``.

    A child process, not a thread: loading torch and the weights would hold this process's
    interpreter for seconds and freeze the dashboard.
    """
    from tui_ft.engine.processes import child_env, python_command

    # Without the current folder on sys.path: a module planted in the workspace is never imported.
    command = python_command("tui_ft", "--home", str(home), "export", name, *flags)
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=child_env())
    if result.returncode == 0:
        return ""
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"export failed (exit {result.returncode})"


def export_merged_cli(home: Path, name: str, out: Path) -> str:
    """Run ``tui-ft export NAME --merged OUT`` in a child process (:func:`export_cli`)."""
    return export_cli(home, name, ["--merged", str(out)])


def folder_bytes(path: Path) -> int:
    """The bytes of every file under ``path`` (links not followed), for the delete dialog."""
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file() and not item.is_symlink():
                total += item.stat().st_size
        except OSError:
            continue  # gone meanwhile
    return total


# Keys that act on the selected run.
RUN_ACTIONS = ("stop_run", "resume_run", "export_run", "toggle_mark", "toggle_log", "delete_run", "clone_run", "diff_runs",
               "rename_run")
KEPT_TAILS = 8  # runs whose metrics stay in memory after the cursor left them (about 2 MB each)


class RunFilter(Input):
    """The Runs pane's filter field: shown by ``/``, hidden again by escape (which clears it)."""

    BINDINGS = keys.RUN_FILTER_BINDINGS

    class Cleared(Message):
        """Escape: the filter is empty again and the field hidden."""

    def action_clear(self) -> None:
        self.value = ""
        self.post_message(self.Cleared())

    def action_done(self) -> None:
        self.screen.query_one(RunTable).focus()


class RunsScreen(Pane):
    """Watch runs live; stop, resume and export them."""

    BINDINGS = keys.RUNS_BINDINGS
    AUTO_FOCUS = "#runs"  # the list, not the filter field above it (hidden until /)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    POLL_SECONDS = 1.0

    DEFAULT_CSS = """
    RunsScreen RunTable { height: auto; max-height: 7; }
    RunsScreen.-tall RunTable { height: auto; max-height: 11; }
    RunsScreen RunFilter, RunsScreen RunFilter:focus { display: none; border: none; height: 1; padding: 0 1; }
    RunsScreen RunFilter.-shown { display: block; }
    RunsScreen #run-info { height: auto; max-height: 2; padding: 0 1; background: $boost; }
    RunsScreen #views { height: 1fr; }
    RunsScreen #plots { grid-size: 1 1; }
    RunsScreen.-tall #plots { grid-size: 2 2; }
    RunsScreen.-short MetricPlot { display: none; }
    RunsScreen.-short MetricPlot.-current { display: block; }
    RunsScreen #log { padding: 0 1; }
    """

    selected: reactive[str | None] = reactive(None)
    """The run whose details and plots are shown."""
    plot_index: reactive[int] = reactive(0)
    """Which plot a short terminal shows (a tall one shows all four)."""
    show_log: reactive[bool] = reactive(False)
    """Show the selected run's worker.log instead of its plots."""
    smoothing = True
    """Per-step curves drawn as their moving average (TensorBoard's smoothing), the raw points faint behind."""

    class RunsPolled(Message):
        """The run folders were read: table rows, new histories, the worker's usage and log."""

        def __init__(self, rows: list[RunRow], histories: dict[str, dict[tuple[str, str], Series]],
                     usage: WorkerUsage | None, log: str | None):
            super().__init__()
            self.rows, self.histories, self.usage, self.log = rows, histories, usage, log

    class PollFinished(Message):
        """The poll's worker is done, its read-ahead included: the next poll may start.

        Not at :class:`RunsPolled`: the worker reads ahead after posting it, and a poll started
        meanwhile found those tails missing and read the same history a second time.
        """

    class RunDeleted(Message):
        """A deletion ended (``error`` is empty on success)."""

        def __init__(self, name: str, error: str):
            super().__init__()
            self.name, self.error = name, error

    class RunRenamed(Message):
        """A rename ended (``error`` is empty on success)."""

        def __init__(self, old: str, new: str, error: str):
            super().__init__()
            self.old, self.new, self.error = old, new, error

    class ExportFinished(Message):
        """An export ended (``error`` is empty on success); ``what`` names it ("merged", "as GGUF f16")."""

        def __init__(self, name: str, out: Path, error: str, what: str = "merged"):
            super().__init__()
            self.name, self.out, self.error, self.what = name, out, error, what

    def __init__(self):
        super().__init__()
        self.rows: dict[str, RunRow] = {}
        self.histories: dict[str, dict[tuple[str, str], Series]] = {}  # watched runs' series, by metric
        self.usage: WorkerUsage | None = None
        self._tails: OrderedDict[str, RunHistory] = OrderedDict()  # owned by the poll thread; oldest first
        self._monitor = WorkerMonitor()  # owned by the poll thread
        self._polling = False
        self._table: RunTable | None = None  # kept: the footer asks check_action often, a query walks the DOM
        self._poll_again = False
        self._pending_selection: str | None = None
        self._timer = None
        self._footer_state: tuple[str | None, str | None] | None = None
        self._all_rows: list[RunRow] = []  # the last poll's rows, before the filter
        self.filter_text = ""

    def compose(self) -> ComposeResult:
        yield PaneTabs("runs")
        yield RunFilter(placeholder="filter runs: words in the name, state, method, model or dataset", id="run-filter")
        yield RunTable(id="runs")
        yield Static("No runs yet: start one in the Train pane (2).", id="run-info")
        with ContentSwitcher(initial="plots", id="views"):
            with Grid(id="plots"):
                for index in range(4):
                    yield MetricPlot(id=f"plot-{index}", classes="-current" if index == 0 else None)
            with VerticalScroll(id="log"):
                yield Static("", id="log-text")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._table = self.query_one(RunTable)
        # Built in the background (not shown): one poll now, then none until it is shown.
        self._timer = self.set_interval(self.POLL_SECONDS, self.poll_runs, pause=not self.is_current)
        self.poll_runs()

    def on_screen_suspend(self) -> None:
        if self._timer:
            self._timer.pause()  # nothing to watch while another pane is shown

    def on_screen_resume(self) -> None:
        if self._timer:
            self._timer.resume()
        self.poll_runs()

    # -- polling -------------------------------------------------------------------------

    @property
    def watched(self) -> frozenset[str]:
        """The runs whose metrics are tailed: the selected one and the marked ones."""
        names = set(self.query_one(RunTable).marked)
        if self.selected:
            names.add(self.selected)
        return frozenset(names)

    def poll_runs(self) -> None:
        """Start a poll unless one is running (then poll again as soon as it ends)."""
        if self._polling:
            self._poll_again = True
            return
        self._polling, self._poll_again = True, False
        watched = self.watched
        self._poll(self.app.home, watched, watched - set(self.histories), self.selected, self.show_log)

    # Not exclusive: poll_runs never starts a second poll while one runs (the tails are not shared).
    @work(thread=True, group="runs-poll", exclusive=False, exit_on_error=False, description="Reading run folders")
    def _poll(self, home: Path, watched: frozenset[str], missing: frozenset[str], selected: str | None,
              want_log: bool) -> None:
        """Read every run's status and the watched runs' new metrics; ``missing`` ones are sent whole."""
        rows = run_rows(home)
        by_name = {row.info.name: row for row in rows}
        changed = {}
        for name in watched & set(by_name):
            history = self._tails.pop(name, None)
            if history is None:
                history = RunHistory(by_name[name].info.path)
                missing = missing | {name}
            self._tails[name] = history  # the most recently watched last
            if history.update() or name in missing:
                changed[name] = dict(history.series)  # the series are shared; the dict may grow here
        # The tails of runs no longer watched are kept a while: moving the cursor back to a run
        # then reads only what it logged since (a 3,000-step history took 56-75 ms to read),
        # and its plots find their pictures in their caches (the same series objects).
        for name in [n for n in self._tails if n not in by_name]:
            del self._tails[name]  # the run's folder is gone
        for name in [n for n in self._tails if n not in watched][: max(0, len(self._tails) - KEPT_TAILS)]:
            del self._tails[name]
        row = by_name.get(selected)
        usage = self._monitor.usage(row.info.pid) if row and row.info.state in LIVE_STATES else None
        log = log_tail(row.info.path) if row and want_log else None
        if not get_current_worker().is_cancelled:  # the app is closing: nobody to tell
            self.post_message(self.RunsPolled(rows, changed, usage, log))
        # Then read ahead the runs the cursor is likely to go to next (the newest first), so
        # that moving to one shows its plots without a read (a first move to a 3,000-step
        # run took 140-210 ms under load, most of it this read competing for the GIL).
        for name in [row.info.name for row in reversed(rows) if row.info.name not in self._tails]:
            if len(self._tails) >= KEPT_TAILS or get_current_worker().is_cancelled:
                break
            self._tails[name] = RunHistory(by_name[name].info.path)
            self._tails[name].update()
            self._tails.move_to_end(name, last=False)  # read ahead: the first to go when room is needed
        if not get_current_worker().is_cancelled:
            self.post_message(self.PollFinished())

    @on(RunsPolled)
    def show_poll(self, message: RunsPolled) -> None:
        table = self.query_one(RunTable)
        self._all_rows = message.rows
        shown = self.shown_rows()
        table.update_runs(shown, existing={row.info.name for row in message.rows})
        self.rows = {row.info.name: row for row in message.rows}
        watched = self.watched
        self.histories = {n: h for n, h in self.histories.items() if n in watched} | {
            n: h for n, h in message.histories.items() if n in watched}
        self.usage = message.usage
        if self._pending_selection and table.select_name(self._pending_selection):
            self._pending_selection = None
        elif self.selected is None and shown:
            live = [r for r in shown if r.info.state in LIVE_STATES]
            table.select_name((live or shown)[-1].info.name)  # reattach: the newest live run
        if watched & set(message.histories):
            self.draw_plots()
        if message.log is not None:
            self.query_one("#log-text", Static).update(Text(clean(message.log)))  # the worker's output: no escapes
            self.query_one("#log", VerticalScroll).scroll_end(animate=False)
        self.show_info()
        self.refresh_bindings_if_changed()

    @on(PollFinished)
    def poll_finished(self) -> None:
        self._polling = False
        if self._poll_again:
            self.poll_runs()

    def worker_failed(self, worker: Worker) -> None:
        if worker.group == "runs-poll":
            self._polling = False  # try again at the next tick

    # -- view ----------------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#runs")
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # Textual posts a highlight with no row key while the table is being cleared and refilled.
        if event.row_key is not None and event.row_key.value is not None:
            self.selected = event.row_key.value

    def watch_selected(self) -> None:
        # The plots after the next frame: the cursor answers the key at once and the four
        # plots (plotext, 10-20 ms each) follow, instead of holding the cursor's repaint.
        self.call_after_refresh(self.draw_plots)
        self.show_info()
        self.refresh_bindings_if_changed()
        self.poll_runs()  # load the newly selected run's history now, not at the next tick

    def watch_plot_index(self, index: int) -> None:
        for number, plot in enumerate(self.query(MetricPlot)):
            plot.set_class(number == index, "-current")

    def watch_show_log(self, show: bool) -> None:
        self.query_one("#views", ContentSwitcher).current = "log" if show else "plots"
        if show:
            self.query_one("#log-text", Static).update("Reading worker.log…")
            self.poll_runs()

    def refresh_bindings_if_changed(self) -> None:
        """Redraw the footer only when the selected run's state changed (it rebuilds every key)."""
        row = self.selected_row()
        key = (row.info.name, row.info.state) if row else (None, None)
        if key != self._footer_state:
            self._footer_state = key
            self.refresh_bindings()

    def draw_plots(self) -> None:
        """Redraw the four plots from the selected run's history and the marked runs' curves.

        Not while the selected run's history is still on its way (the cursor just moved to a run
        not read yet): the plots keep the last run's pictures until the poll brings it, rather
        than flash "no data yet" for a run that has data.
        """
        if self.selected and self.selected not in self.histories and self.selected in self.rows:
            return
        row = self.rows.get(self.selected or "")
        series = self.histories.get(self.selected or "", {})
        marked = self.query_one(RunTable).marked  # a run seen before but no longer marked is not drawn
        overlays = {n: h for n, h in sorted(self.histories.items()) if n in marked and n != self.selected}
        for plot, spec in zip(self.query(MetricPlot), plots_for(row.info.method if row else "lora"), strict=False):
            plot.show(spec, series, overlays)
            if not self.is_current:
                # Built in the background and not shown yet (nothing renders it): have the
                # pictures drawn now rather than on the first visit.
                plot.prepare()

    def shown_rows(self) -> list[RunRow]:
        """The last poll's rows that the filter lets through (all of them without a filter)."""
        return [row for row in self._all_rows if run_matches(row.info, self.filter_text)]

    def show_info(self) -> None:
        info = self.query_one("#run-info", Static)
        row = self.selected_row()
        if row is None:
            if self.rows and self.filter_text.strip():
                info.update(Text(f"No run matches {clean(self.filter_text.strip())!r} "
                                 f"({len(self.rows)} in all): escape in the filter shows them all."))
            else:
                info.update("No runs yet: start one in the Train pane (2)." if not self.rows else "")
            return
        run = row.info
        # Names, the model and the message come from the run's files: no escapes (Text is never markup).
        model, dataset = clean(run.model), clean(run.dataset)
        text = Text()
        text.append(clean(run.name), style="bold")
        text.append(clean(f" · {run.state} · {run.method} on {Path(dataset).name} · {Path(model).name or model}"))
        if run.state in LIVE_STATES and self.usage:
            text.append(f" · pid {run.pid} CPU {self.usage.cpu_percent:.0f}% RAM {format_bytes(self.usage.rss_bytes)}")
            gpu = self.usage.gpu
            if gpu:
                util = f"{gpu.utilization:.0f}% " if gpu.utilization is not None else ""
                own = f"{format_bytes(gpu.process_bytes)} of " if gpu.process_bytes is not None else ""
                text.append(f" · GPU {util}{own}{format_bytes(gpu.used_bytes)}/{format_bytes(gpu.total_bytes)}")
        if run.message:
            text.append(f" · {clean(run.message)}", style="dim")
        info.update(text)

    # -- actions -------------------------------------------------------------------------

    def select_run(self, name: str) -> None:
        """Select run ``name`` now, or as soon as a poll finds it (a run the Train pane just created)."""
        if not self.query_one(RunTable).select_name(name):
            self._pending_selection = name
            self.poll_runs()

    def selected_row(self) -> RunRow | None:
        """The row under the table's cursor, which keys act on.

        Read from the cursor, not from ``selected``: a key pressed right after an arrow key runs
        before the table's highlight message has updated ``selected``.
        """
        if self._table is None:  # not mounted yet (the footer may ask already)
            return None
        return self.rows.get(self._table.selected_name or "")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        row = self.selected_row()
        state = row.info.state if row else None
        allowed = {
            "stop_run": state in LIVE_STATES,
            # A queued run with no worker was created only (train --create-only): r starts it.
            "resume_run": state in RESUMABLE_STATES or (state == RunState.QUEUED and not row.info.pid),
            "export_run": state == RunState.FINISHED,
            "toggle_mark": row is not None,
            "toggle_log": row is not None,
            "delete_run": row is not None,
            # A live worker writes to the folder it was started in: a rename waits for it to end.
            "rename_run": row is not None and not (state in LIVE_STATES and row.info.pid),
            "clone_run": row is not None,
            "diff_runs": row is not None and bool(self.diff_names()),
        }.get(action, True)
        return True if allowed else None  # None: shown dimmed in the footer

    def why_not(self, action: str) -> str | None:
        row = self.selected_row()
        if row is None:
            return "No run selected: start one in the Train pane (2)." if action in RUN_ACTIONS else None
        name, state = row.info.name, row.info.state
        return {
            "stop_run": f"{name} is {state}: only a queued or running run can be stopped.",
            "resume_run": f"{name} is {state}: only a stopped, failed or died run can be resumed"
                          + (" (e exports it)." if state == RunState.FINISHED else "."),
            "export_run": f"{name} is {state}: only a finished run can be exported.",
            "rename_run": f"{name} is {state}: stop it first (s), then rename it.",
            "diff_runs": "Mark a run (space), then press f on another to compare their settings.",
        }.get(action)

    def action_toggle_mark(self) -> None:
        row = self.selected_row()
        if row:
            marked = self.query_one(RunTable).toggle_mark(row.info.name)
            self.notify(f"{row.info.name} {'marked: its loss is overlaid' if marked else 'unmarked'}", timeout=2)
            self.draw_plots()
            self.poll_runs()

    def action_next_plot(self) -> None:
        self.plot_index = (self.plot_index + 1) % 4

    def action_toggle_log(self) -> None:
        self.show_log = not self.show_log

    def action_toggle_smoothing(self) -> None:
        smoothing = not self.smoothing
        self.smoothing = smoothing
        for plot in self.query(MetricPlot):
            plot.set_smoothing(smoothing)
        self.notify(f"Smoothing {'on: moving averages, the raw points faint behind' if smoothing else 'off: raw points'}",
                    timeout=2)

    def diff_names(self) -> list[str]:
        """The runs ``f`` compares: the marked ones, and the selected one with them (at least two)."""
        marked = sorted(self.query_one(RunTable).marked)
        row = self.selected_row()  # the cursor's row: f right after an arrow key compares the new one
        selected = row.info.name if row else None
        names = marked + [selected] if selected and selected not in marked else marked
        return names if len(names) >= 2 else []

    def action_diff_runs(self) -> None:
        names = self.diff_names()
        if names:
            configs = {name: read_run_config(self.rows[name].info.path) for name in names if name in self.rows}
            self.app.push_screen(ConfigDiffScreen(configs, self.app.home))

    def action_delete_run(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        name, path, live = row.info.name, row.info.path, row.info.state in LIVE_STATES

        def delete(confirmed: bool | None) -> None:
            if confirmed:
                self.notify(f"Stopping {name}, then deleting it…" if live else f"Deleting {name}…", timeout=3)
                self.delete_run(name, path)

        self.app.push_screen(ConfirmDelete(name, live, format_bytes(folder_bytes(path))), delete)

    # Not exclusive: two deletions may go on side by side; each waits for its own worker.
    @work(thread=True, group="runs-delete", exclusive=False, exit_on_error=False, description="Deleting a run")
    def delete_run(self, name: str, path: Path) -> None:
        try:
            delete_run(path)
            error = ""
        except (RunError, OSError) as problem:
            error = str(problem)
        self.post_message(self.RunDeleted(name, error))

    @on(RunDeleted)
    def run_deleted(self, message: RunDeleted) -> None:
        if message.error:
            self.notify(f"{message.name} was not deleted: {message.error}", severity="error", timeout=10)
        else:
            self.notify(f"Deleted {message.name}.", timeout=3)
        self.poll_runs()

    def action_filter_runs(self) -> None:
        field = self.query_one(RunFilter)
        field.add_class("-shown")
        field.focus()

    @on(Input.Changed, "#run-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self.apply_filter()

    @on(RunFilter.Cleared)
    def filter_cleared(self) -> None:
        self.query_one(RunFilter).remove_class("-shown")
        self.filter_text = ""
        self.apply_filter()
        self.query_one(RunTable).focus()

    def apply_filter(self) -> None:
        """Show the runs the filter lets through now, from the last poll (no folder is read)."""
        table = self.query_one(RunTable)
        table.update_runs(self.shown_rows(), existing=set(self.rows))
        if table.selected_name != self.selected and table.selected_name is not None:
            self.selected = table.selected_name
        self.show_info()
        self.refresh_bindings_if_changed()

    def action_rename_run(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        old, path = row.info.name, row.info.path

        def rename(new: str | None) -> None:
            if new:
                self.rename_run(old, path, new)

        self.app.push_screen(RenameDialog(old, set(self.rows)), rename)

    @work(thread=True, group="runs-rename", exclusive=False, exit_on_error=False, description="Renaming a run")
    def rename_run(self, old: str, path: Path, new: str) -> None:
        from tui_ft.engine.evaluation.run_rename import rename_run

        try:
            rename_run(path, new, self.app.home)
            error = ""
        except (RunError, OSError) as problem:
            error = str(problem)
        self.post_message(self.RunRenamed(old, new, error))

    @on(RunRenamed)
    def run_renamed(self, message: RunRenamed) -> None:
        if message.error:
            self.notify(f"{message.old} was not renamed: {message.error}", severity="error", timeout=10)
            return
        self.notify(f"Renamed {message.old} to {message.new}.", timeout=3)
        table = self.query_one(RunTable)
        if message.old in table.marked:
            table.marked.discard(message.old)
            table.marked.add(message.new)
        self._pending_selection = message.new
        self.poll_runs()

    async def action_clone_run(self) -> None:
        """Fill the Train form with the selected run's settings and show it (its fields' changes plan again)."""
        row = self.selected_row()
        if row is None:
            return
        config = read_run_config(row.info.path)
        await self.app.action_show_pane("train")
        forms = self.app.screen.query(TrainForm)
        if forms:
            left_out = forms.first().fill_from(config)
            note = f"; {'; '.join(left_out)}" if left_out else ""
            self.app.notify(f"The form holds {row.info.name}'s settings: change what you like, then ctrl+s{note}.",
                            timeout=6)

    def action_stop_run(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        if stop_run(row.info.path):
            self.notify(f"Stopping {row.info.name}: it saves a checkpoint at the next step.")
        else:
            self.notify(f"{row.info.name} has no running worker; it is marked stopped.")
        self.poll_runs()

    def action_resume_run(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        try:
            pid = resume_run(row.info.path)
        except RunError as error:
            self.notify(str(error), severity="error")
            return
        self.notify(f"Resumed {row.info.name} (worker pid {pid}).")
        self.poll_runs()

    def action_export_run(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        name = row.info.name

        def export_to(choice: ExportChoice | None) -> None:
            if choice is not None:
                self.notify(f"Exporting {name} {choice.label} to {choice.path}…")
                self.export_run(name, choice)

        self.app.push_screen(ExportDialog(name, row.info.path), export_to)

    # Not exclusive: exports of two runs may go on side by side.
    @work(thread=True, group="runs-export", exclusive=False, exit_on_error=False, description="Exporting a run's model")
    def export_run(self, name: str, choice: ExportChoice) -> None:
        if choice.format == "merged":
            error = export_merged_cli(self.app.home, name, choice.path)
        else:
            error = export_cli(self.app.home, name, choice.cli_flags())
        self.post_message(self.ExportFinished(name, choice.path, error, choice.label))

    @on(ExportFinished)
    def export_finished(self, message: ExportFinished) -> None:
        if message.error:
            self.notify(f"Export of {message.name} failed: {message.error}", severity="error", timeout=10)
        else:
            self.notify(f"Exported {message.name} {message.what} to {message.out}", timeout=10)
