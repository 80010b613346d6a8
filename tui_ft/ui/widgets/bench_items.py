"""Drill-down of one Benchmark cell: every item with its prompt, expected answer, reply and ✓/✗ (or its reward)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

from tui_ft.safe_text import clean, plain
from tui_ft.ui import keys
from tui_ft.ui.widgets.key_footer import KeyFooter
from tui_ft.ui.widgets.pane_tabs import PaneTabs
from tui_ft.views.bench_table import cell_text

SHORT = 36  # characters of a prompt or reply shown in the list; the full text is shown below


def one_line(text: str, width: int = SHORT) -> Text:
    """``text`` on one line, cut to ``width`` characters with an ellipsis (plain: a file's text is never markup)."""
    flat = " ".join(clean(text).split())
    return plain(flat if len(flat) <= width else flat[: width - 1] + "…")


def mark(correct: bool) -> Text:
    """✓ in green or ✗ in red."""
    return Text("✓", style="bold green") if correct else Text("✗", style="bold red")


def reward_text(value) -> Text:
    """A reward, signed, green when positive."""
    if not isinstance(value, (int, float)):
        return Text("?")
    return Text(f"{value:+.3f}", style="green" if value > 0 else "red")


def summary(record: dict, row_label: str) -> str:
    """One line about the result: what, how much, how it was scored."""
    if record["kind"] == "reward":
        return (f"{row_label} · {record['prompts']} — mean reward {record['reward']:+.3f} over {record['n']} replies · "
                f"reward model {record['reward_model_name']} · template {record.get('template', '?')}")
    if record["kind"] == "benchmark":
        right = sum(1 for item in record.get("items", []) if item.get("correct"))
        return (f"{row_label} · {record['benchmark']} — {right}/{record['n']} correct ({cell_text(record)}) · "
                f"scorer {record.get('scorer', '?')} · template {record.get('template', '?')}")
    return (f"{row_label} · {record['dataset']} — perplexity {record['perplexity']:.4f} over {record['tokens']} "
            f"scored tokens (NLL {record.get('nll', 0):.2f}) · template {record.get('template', '?')}")


class BenchItemsScreen(Screen[None]):
    """Every item of a stored benchmark result; the highlighted item is shown in full below."""

    BINDINGS = keys.BENCHMARK_ITEMS_BINDINGS
    DEFAULT_CSS = """
    BenchItemsScreen #bench-items-summary { height: auto; }
    BenchItemsScreen #bench-items { height: 1fr; }
    BenchItemsScreen #bench-item-scroll { height: 9; border-top: solid $panel; }
    BenchItemsScreen #bench-item-detail { padding: 0 1; }
    """

    def __init__(self, record: dict, row_label: str):
        super().__init__()
        self.record = record
        self.row_label = row_label

    def compose(self) -> ComposeResult:
        yield PaneTabs("benchmark")
        yield Static(plain(summary(self.record, self.row_label)), id="bench-items-summary", classes="pane-title")
        yield DataTable(id="bench-items", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="bench-item-scroll"):
            yield Static("", id="bench-item-detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one("#bench-items", DataTable)
        items = self.record.get("items") or []
        if self.record["kind"] == "reward":
            table.add_columns("#", "reward", "prompt", "reply")
            for number, item in enumerate(items, 1):
                table.add_row(str(number), reward_text(item.get("reward")), one_line(item.get("prompt", "")),
                              one_line(item.get("reply", ""), 2 * SHORT))
            self.show_item(0)
            table.focus()
            return
        if self.record["kind"] != "benchmark":
            table.display = False
            self.query_one("#bench-item-detail", Static).update(plain(
                "Perplexity is one number over the whole dataset: exp(total NLL / scored tokens).\n"
                f"tokens scored: {self.record.get('tokens')}   max length: {self.record.get('max_length') or 'none'}"))
            return
        table.add_columns("#", "", "prompt", "expected", "reply")
        for number, item in enumerate(items, 1):
            table.add_row(str(number), mark(item.get("correct", False)), one_line(item.get("prompt", "")),
                          one_line(item.get("expected", ""), 16), one_line(item.get("reply", "")))
        self.show_item(0)
        table.focus()

    @on(DataTable.RowHighlighted, "#bench-items")
    def item_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_item(event.cursor_row)

    def show_item(self, index: int) -> None:
        """Show item ``index`` in full under the list."""
        items = self.record.get("items") or []
        if not 0 <= index < len(items):
            return
        item = items[index]
        text = Text()
        text.append(f"item {index + 1}/{len(items)}", style="bold")
        if item.get("line"):
            text.append(f" (line {item['line']})", style="dim")
        text.append("  ")
        if self.record["kind"] == "reward":
            text.append("reward ")
            text.append_text(reward_text(item.get("reward")))
        else:
            text.append_text(mark(item.get("correct", False)))
        text.append("\nprompt: ", style="bold")
        text.append(clean(item.get("prompt", "")))
        if self.record["kind"] != "reward":
            text.append("\nexpected: ", style="bold")
            text.append(clean(item.get("expected", "")), style="cyan")
        text.append("\nreply: ", style="bold")
        text.append(clean(item.get("reply", "")))
        self.query_one("#bench-item-detail", Static).update(text)

    def action_close(self) -> None:
        """Back to the table."""
        self.dismiss(None)
