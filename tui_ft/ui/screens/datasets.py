"""The Datasets pane: every file under datasets/, validated, with stats and the loss mask shown.

Reading files happens in thread workers; the tokenizer is loaded and run in a child process
(:mod:`tui_ft.engine.data.tokenizer_process`: transformers is never imported here), asked from
thread workers. Results reach the pane as messages, so it stays responsive on large files and
while the tokenizer loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, ProgressBar, Static, TabbedContent, TabPane

from tui_ft.engine.data import Dataset, Example, find_datasets, load_dataset, preference_examples, sft_examples
from tui_ft.engine.data.tokenizer_process import RenderedExample, TokenizerInfo, TokenizerProcess, tokenizer_process
from tui_ft.safe_text import clean, plain
from tui_ft.ui import keys
from tui_ft.ui.screens.pane import Pane
from tui_ft.ui.widgets.key_footer import KeyFooter
from tui_ft.ui.widgets.pane_tabs import PaneTabs

MAX_LENGTH = 512  # the Train form's default; stats count the examples beyond it


@dataclass
class Scanned:
    """One row of the file list."""

    path: Path
    dataset: Dataset | None
    error: str = ""


def record_count(count: int, file_format: str = "") -> str:
    """``1 example``, ``8 examples``; a preference file counts pairs."""
    unit = "pair" if file_format == "preference" else "example"
    return f"{count} {unit}{'' if count == 1 else 's'}"


class ShownExample(NamedTuple):
    """Which example the Example tab shows, and how."""

    path: Path
    index: int
    count: int
    template: str
    train_on_prompt: bool


class DatasetsScreen(Pane):
    """Browse and validate datasets; preview examples with the trained tokens highlighted."""

    BINDINGS = keys.DATASET_BINDINGS
    # The file list is wider than the other panes' lists: at 80 columns the mark and the longest
    # shipped names (29 characters) fit; at 120 the format and the example count fit too. The
    # summary wraps rather than lose its end ("valid", the problem count) on a narrow terminal.
    CSS = """
    .sidebar {
        width: 45%;
        min-width: 36;
        max-width: 56;
    }
    #summary {
        height: auto;
    }
    """

    example_index: reactive[int] = reactive(0)
    """Which example of the selected file is shown."""
    template: reactive[str | None] = reactive(None)
    """The template used to render examples (None: the model's default)."""
    train_on_prompt: reactive[bool] = reactive(False)
    """Show the loss on every token instead of the replies only."""

    class FilesScanned(Message):
        """The datasets folder was read."""

        def __init__(self, rows: list[Scanned]):
            super().__init__()
            self.rows = rows

    class TokenizerLoaded(Message):
        """The tokenizer used for stats and rendering is ready (in its own process)."""

        def __init__(self, tokens: TokenizerProcess | None, info: TokenizerInfo | None, error: str = ""):
            super().__init__()
            self.tokens, self.info = tokens, info
            self.error = error

    class ModelProgressed(Message):
        """The default model's one-time conversion moved on."""

        def __init__(self, what: str, fraction: float):
            super().__init__()
            self.what, self.fraction = what, fraction

    class ExampleRendered(Message):
        """An example was rendered and tokenized (or could not be: ``error``)."""

        def __init__(self, shown: ShownExample, example: Example, rendered: RenderedExample | None, error: str = ""):
            super().__init__()
            self.shown, self.example, self.rendered, self.error = shown, example, rendered, error

    class StatsComputed(Message):
        """Token statistics of one file were computed."""

        def __init__(self, path: Path, text: Text):
            super().__init__()
            self.path, self.text = path, text

    def __init__(self):
        super().__init__()
        self.rows: list[Scanned] = []
        self.tokens: TokenizerProcess | None = None  # the tokenizer, in its own process
        self.tokenizer_info: TokenizerInfo | None = None
        self._shown_example: ShownExample | None = None  # the example the view should show
        self.selected: Scanned | None = None

    def compose(self) -> ComposeResult:
        yield PaneTabs("datasets")
        with Horizontal():
            with Vertical(classes="sidebar"):
                yield Static("Datasets", classes="pane-title")
                yield DataTable(id="files", cursor_type="row", zebra_stripes=True)
            with Vertical(classes="detail"):
                yield Static("", id="summary", classes="pane-title")
                yield ProgressBar(id="model-progress", show_eta=False)
                with TabbedContent(id="tabs"):
                    with TabPane("Example", id="tab-example"):
                        with VerticalScroll():
                            yield Static("", id="example")
                    with TabPane("Stats", id="tab-stats"):
                        with VerticalScroll():
                            yield Static("Loading the tokenizer…", id="stats")
                    with TabPane("Problems", id="tab-problems"):
                        with VerticalScroll():
                            yield Static("", id="problems")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#model-progress").display = False
        table = self.query_one("#files", DataTable)
        # The mark and the count come first, the format last: at 80 columns the longer shipped
        # file names leave no room after them, and the summary line names the format anyway.
        table.add_columns("", "n", "file", "format")
        self.scan_files()
        self.load_tokenizer()

    # -- workers -------------------------------------------------------------------------

    @work(thread=True, group="datasets-scan", exclusive=True, exit_on_error=False, description="Reading datasets/")
    def scan_files(self) -> None:
        rows = []
        for path in find_datasets(self.app.home / "datasets"):
            try:
                rows.append(Scanned(path, load_dataset(path, strict=False)))
            except Exception as error:  # a file we cannot read must not take the pane down
                rows.append(Scanned(path, None, str(error).splitlines()[0]))
        self.post_message(self.FilesScanned(rows))

    @work(thread=True, group="datasets-tokenizer", exclusive=True, exit_on_error=False, description="Loading the tokenizer")
    def load_tokenizer(self) -> None:
        from tui_ft.engine.models import ModelError, resolve_model

        try:
            resolved = resolve_model(  # the tokenizer alone: a Hub model's weights are not fetched for it
                self.app.model_ref, self.app.home, progress=lambda w, f: self.post_message(self.ModelProgressed(w, f)),
                weights=False,
            )
            tokens = tokenizer_process(resolved.path)
            self.post_message(self.TokenizerLoaded(tokens, tokens.info()))
        except (ModelError, OSError, ValueError) as error:
            self.post_message(self.TokenizerLoaded(None, None, str(error).splitlines()[0]))

    @work(thread=True, group="datasets-stats", exclusive=True, exit_on_error=False, description="Counting tokens")
    def compute_stats(self, row: Scanned, template: str) -> None:
        stats = self.tokens.stats(row.dataset, template, MAX_LENGTH)
        text = Text()
        text.append(f"{record_count(stats.examples)}, template {template}\n", style="bold")
        text.append(f"tokens per example: min {stats.min_tokens}, median {stats.median_tokens:g}, max {stats.max_tokens}\n")
        text.append(f"total tokens: {stats.total_tokens}\n")
        over_style = "bold red" if stats.over_max_length else "green"
        text.append(f"{stats.over_max_length} over max length {stats.max_length}\n\n", style=over_style)
        peak = max((c for *_, c in stats.histogram), default=1) or 1
        for low, high, count in stats.histogram:
            text.append(f"{low:>6}–{high:<6} {count:>5} ")
            text.append("█" * round(30 * count / peak) + "\n", style="cyan")
        self.post_message(self.StatsComputed(row.path, text))

    # -- events --------------------------------------------------------------------------

    @on(FilesScanned)
    def show_files(self, message: FilesScanned) -> None:
        kept = self.selected
        self.rows = message.rows
        table = self.query_one("#files", DataTable)
        # Refilled without highlight messages: they would show the first file, then the kept one
        # (its example back at 1), one after the other.
        with table.prevent(DataTable.RowHighlighted):
            table.clear()
            for row in self.rows:
                name = plain(row.path.relative_to(self.app.home / "datasets"))  # a file name: never markup
                if row.dataset is None:
                    table.add_row(Text("✗", style="bold red"), "", name, "?")
                    continue
                mark = Text("✗", style="bold red") if row.dataset.problems else Text("✓", style="green")
                table.add_row(mark, Text(str(len(row.dataset)), justify="right"), name, row.dataset.format)
        if not self.rows:
            self.query_one("#summary", Static).update("No dataset files in datasets/ (.jsonl, .json, .csv, .parquet)")
            return
        # A rescan keeps the file under the cursor (r used to put it back on the first file).
        index = next((i for i, row in enumerate(self.rows) if kept is not None and row.path == kept.path), 0)
        with table.prevent(DataTable.RowHighlighted):
            table.move_cursor(row=index)
        self.select(index)

    @on(DataTable.RowHighlighted, "#files")
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.select(event.cursor_row)

    @on(ModelProgressed)
    def show_model_progress(self, message: ModelProgressed) -> None:
        bar = self.query_one("#model-progress", ProgressBar)
        bar.display = message.fraction < 1
        bar.update(total=100, progress=int(message.fraction * 100))
        self.query_one("#stats", Static).update(plain(f"Preparing the default model: {message.what}"))

    @on(TokenizerLoaded)
    def tokenizer_loaded(self, message: TokenizerLoaded) -> None:
        self.query_one("#model-progress").display = False
        if message.error:
            self.query_one("#stats", Static).update(plain(message.error, style="red"))
            self.notify(message.error, severity="error")
            return
        self.tokens, self.tokenizer_info = message.tokens, message.info
        self.refresh_detail()

    @on(StatsComputed)
    def show_stats(self, message: StatsComputed) -> None:
        if self.selected and self.selected.path == message.path:
            self.query_one("#stats", Static).update(message.text)

    # -- view ----------------------------------------------------------------------------

    def select(self, index: int) -> None:
        """Show file ``index``; the same file again (a rescan) keeps its example."""
        if not 0 <= index < len(self.rows):
            return
        same = self.selected is not None and self.selected.path == self.rows[index].path
        self.selected = self.rows[index]
        if not same:
            self.example_index = 0
        self.refresh_detail()

    def current_template(self) -> str:
        return self.template or self.tokenizer_info.default_template

    def examples(self) -> list:
        dataset = self.selected.dataset if self.selected else None
        if dataset is None:
            return []
        if dataset.format == "preference":
            return [e for pair in dataset.records for e in preference_examples(pair)]
        return sft_examples(dataset)

    def refresh_detail(self) -> None:
        row = self.selected
        if row is None:
            return
        summary = self.query_one("#summary", Static)
        problems = self.query_one("#problems", Static)
        # The file's name, its problems and its examples are the file's text: plain, no escapes.
        if row.dataset is None:
            summary.update(plain(f"{row.path.name}: unreadable"))
            problems.update(plain(row.error, style="red"))
            return
        dataset = row.dataset
        state = f"{len(dataset.problems)} problems" if dataset.problems else "valid"
        summary.update(plain(f"{row.path.name} — {dataset.format}, {record_count(len(dataset), dataset.format)}, {state}"))
        if dataset.problems:
            text = Text()
            for problem in dataset.problems[:500]:
                text.append(clean(f"{problem.path}:{problem.line}: "), style="bold red")
                text.append(clean(problem.message) + "\n")
            if len(dataset.problems) > 500:
                text.append(f"… and {len(dataset.problems) - 500} more\n", style="dim")
            problems.update(text)
        else:
            problems.update(Text("No problems found.", style="green"))
        if self.tokens is not None and self.examples():
            self.compute_stats(row, self.current_template())
        elif self.tokens is not None:
            self.query_one("#stats", Static).update("Nothing to train on in this file (prompts only).")
        self.render_example()

    def render_example(self) -> None:
        view = self.query_one("#example", Static)
        examples = self.examples()
        if not examples:
            view.update("No example to show.")
            return
        if self.tokens is None:
            view.update("Loading the tokenizer…")
            return
        index = self.example_index % len(examples)
        shown = ShownExample(self.selected.path, index, len(examples), self.current_template(), self.train_on_prompt)
        self._shown_example = shown
        self.tokenize_example(shown, examples[index])

    @work(thread=True, group="datasets-example", exclusive=True, exit_on_error=False, description="Tokenizing an example")
    def tokenize_example(self, shown: ShownExample, example: Example) -> None:
        try:
            rendered = self.tokens.render(example, shown.template, MAX_LENGTH, shown.train_on_prompt)
        except ValueError as error:
            rendered, problem = None, str(error)
        else:
            problem = ""
        self.post_message(self.ExampleRendered(shown, example, rendered, problem))

    @on(ExampleRendered)
    def show_example(self, message: ExampleRendered) -> None:
        if message.shown != self._shown_example:
            return  # the cursor moved on while it was tokenized
        view = self.query_one("#example", Static)
        if message.rendered is None:
            view.update(plain(message.error, style="red"))
            return
        rendered, example, shown = message.rendered, message.example, message.shown
        text = Text()
        # A preference file shows each pair as its chosen then its rejected conversation.
        pairs = self.selected is not None and self.selected.dataset is not None and self.selected.dataset.format == "preference"
        rejected = pairs and shown.index % 2 == 1
        which = (f"pair {shown.index // 2 + 1}/{shown.count // 2} · {'rejected' if rejected else 'chosen'}" if pairs
                 else f"example {shown.index + 1}/{shown.count}")
        text.append(
            f"{which} (line {example.line}) · {rendered.tokens} tokens · "
            f"{rendered.trained_tokens} {'scored' if pairs else 'trained'} · template {shown.template}\n",
            style="bold",
        )
        if rendered.truncated:
            text.append(f"truncated from {rendered.full_length} tokens to {MAX_LENGTH}\n", style="bold red")
        reply_style = "bold red" if rejected else "bold green"
        text.append("dim = prompt (no loss)   ", style="dim")
        text.append("red = the reply DPO makes less likely\n\n" if rejected
                    else "green = the reply DPO makes more likely\n\n" if pairs
                    else "green = trained tokens\n\n", style=reply_style)
        for segment, trained in rendered.segments:
            text.append(clean(segment), style=reply_style if trained else "dim")
        view.update(text)

    # -- actions -------------------------------------------------------------------------

    def action_example(self, step: int) -> None:
        if self.examples():
            self.example_index = (self.example_index + step) % len(self.examples())
            self.render_example()

    def action_toggle_template(self) -> None:
        if self.tokens is None:
            return
        self.template = "alpaca" if self.current_template() == "chat" else "chat"
        if self.template == "chat" and not self.tokenizer_info.has_chat_template:
            self.template = "alpaca"
            self.notify("This model has no chat template.")
        self.refresh_detail()

    def action_toggle_train_on_prompt(self) -> None:
        self.train_on_prompt = not self.train_on_prompt
        self.render_example()

    def action_rescan(self) -> None:
        self.scan_files()
