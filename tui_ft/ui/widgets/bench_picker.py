"""The Benchmark pane's column picker: which benchmark or perplexity dataset evaluations go to."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Select, Static

from tui_ft.safe_text import plain
from tui_ft.views.bench_table import Column


def option_label(column: Column) -> str:
    """How the picker names a column (files in ``datasets/`` by their name there; a scorer other than the default first)."""
    path = column.path.removeprefix("datasets/")
    if column.kind == "reward":  # the reward model, then the sheet whose replies it judges (no room for .jsonl)
        return f"reward:{column.scorer} · {Path(path).stem}"
    kind = "ppl" if column.kind == "perplexity" else f"{column.scorer} score" if column.scorer else "score"
    return f"{kind} · {path}"


class ColumnPicker(Horizontal):
    """A labelled Select of columns, and a one-line hint about enter."""

    DEFAULT_CSS = """
    ColumnPicker { height: 3; }
    ColumnPicker #bench-column-label { width: auto; padding: 1 1 0 1; }
    ColumnPicker #bench-target { width: 60; }  /* "reward:reward-concise · seed_human_eval_prompts" */
    ColumnPicker #bench-hint { width: 1fr; height: 3; padding: 1 1 0 1; color: $text-muted; }
    """

    class ColumnPicked(Message):
        """The user picked a column in the Select (``key`` is a ``Column.key``)."""

        def __init__(self, key: str):
            super().__init__()
            self.key = key

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.options: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        yield Static("Column", id="bench-column-label")
        yield Select([], id="bench-target", prompt="nothing to evaluate", allow_blank=True)
        yield Static("enter: a cell's items, or evaluate it", id="bench-hint")

    def show(self, columns: list[Column], target: str) -> None:
        """Offer ``columns`` and show ``target`` picked, without posting :class:`ColumnPicked`."""
        select = self.query_one(Select)
        options = [(option_label(c), c.key) for c in columns]
        with self.prevent(Select.Changed):
            if options != self.options:
                select.set_options([(plain(label), key) for label, key in options])  # file names: never markup
                self.options = options
            if target in {key for _, key in options}:
                select.value = target

    def pick(self, key: str) -> None:
        """Pick ``key`` as if the user had chosen it (posts :class:`ColumnPicked`)."""
        self.query_one(Select).value = key

    @on(Select.Changed)
    def select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value != Select.NULL:  # the blank entry ("nothing to evaluate") picks no column
            self.post_message(self.ColumnPicked(str(event.value)))
