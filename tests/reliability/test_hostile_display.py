"""Hostile text in shared files, shown by the CLI and the dashboard: no terminal escapes, never markup.

A colleague's run folder, a downloaded dataset or a stored result may hold escape sequences
(OSC 52 writes the clipboard, OSC 0 the window title, CSI 2J clears the screen) and Rich or
Textual markup (``[link=…]`` became a link; ``[/x]`` raised ``MarkupError``: ``tui-ft runs``
crashed, and a toast naming ``colleague-model[/x]`` took the dashboard down). Here they are in a
run's folder name, ``run.json`` model, ``status.json`` message and ``worker.log``, a dataset's
file name and lines, and a stored benchmark result. Every place that shows them must show the
text literally, with the escapes removed, and stay up.

The dashboard's screen is read through ``App.export_screenshot`` (the text of every cell, as a
terminal would get it); the CLI's output through ``capsys``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from textual.widgets import DataTable, Select, Static

from tui_ft.cli import main
from tui_ft.engine.evaluation import store as eval_store
from tui_ft.engine.files import write_json_atomic
from tui_ft.engine.models.default_model import default_model_dir
from tui_ft.engine.models.references import ModelRef
from tui_ft.safe_text import clean
from tui_ft.ui.app import TuiFtApp

from polling import settle_workers
from report import Section

REPO = Path(__file__).resolve().parents[2]
CSS = REPO / "tui_ft" / "ui" / "app.tcss"  # a relative CSS path would be read beside this test
ESCAPES = "\x1b]52;c;ZXZpbA==\x07\x1b]0;pwned\x07\x1b[2J"  # clipboard write ("evil"), window title, clear screen
MARKUP = "[link=https://x]click[/link] [/x]"
HOSTILE = f"colleague-model[/x] {MARKUP} {ESCAPES}end"
SHOWN = f"colleague-model[/x] {MARKUP} end"  # what must be shown: the markup as text, the escapes gone
# Names: any byte but / and NUL, so markup without a closing tag (shown as is, not as a style).
EVIL_RUN = f"evil[reverse]run{ESCAPES}"
EVIL_DATASET = f"shared[reverse]{ESCAPES}.jsonl"

SECTION = Section(
    "hostile-display",
    "Hostile files: text shown on screen",
    ["Written by `tests/reliability/test_hostile_display.py`. The hostile text is escape sequences (OSC 52 clipboard",
     "write, OSC 0 window title, CSI 2J clear screen) and markup (`[link=https://x]`, `[/x]`, `colleague-model[/x]`;",
     "`[reverse]` in file and folder names, which cannot hold `/`).",
     "Each row asserts: no exception or exit, no ESC byte in what reaches the terminal, the markup shown as text."],
    ["where", "hostile text in", "outcome"],
    ["cli-runs", "cli-models", "cli-data-show", "cli-data-check", "runs-pane", "datasets-pane", "benchmark-pane", "chat-pane",
     "train-pane"],
)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    SECTION.write_if_complete()


# ----- the files ---------------------------------------------------------------------------------


def write_run(home: Path, name: str, model: str, state: str, message: str, adapter: bool) -> Path:
    run_dir = home / "checkpoints" / name
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({
        "name": name, "model": model, "model_path": f"/nonexistent/{model}", "method": "lora", "template": "chat",
        "dataset": str(home / "datasets" / EVIL_DATASET), "created": 1_700_000_000.0}))
    (run_dir / "status.json").write_text(json.dumps({
        "state": state, "pid": None, "step": 3, "total_steps": 10, "epoch": 0.3, "message": message,
        "started": 1_700_000_000.0, "updated": 1_700_000_100.0}))
    with open(run_dir / "metrics.jsonl", "w") as file:
        for step in range(1, 4):
            file.write(json.dumps({"kind": "train", "step": step, "epoch": step / 10, "time": 1_700_000_000.0 + step,
                                   "loss": 2.0 / step, "ppl": 7.0 / step, "lr": 1e-4, "tokens": 100, "step_time": 0.5,
                                   "tokens_per_s": 200.0}) + "\n")
        file.write(json.dumps({"kind": "event", "step": 3, "epoch": 0.3, "time": 1_700_000_003.0, "event": "failed",
                               "message": message}) + "\n")
    (run_dir / "worker.log").write_text(f"loading {HOSTILE}\nTraceback: {HOSTILE}\n")
    if adapter:
        (run_dir / "adapter").mkdir()
        (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    return run_dir


def store_result(home: Path, run_dir: Path, dataset: str) -> None:
    """A stored benchmark result of the run whose items hold the hostile text (as eval_store writes them)."""
    resolved = ModelRef(run_dir.name, default_model_dir(), "run", run_dir / "adapter", "chat")
    model_id = f"run:{run_dir.resolve()}"
    identity = {"kind": "benchmark", "model": model_id, "checkpoint": None, "template": "chat", "benchmark": dataset,
                "dataset": None}
    items = [{"prompt": HOSTILE, "expected": f"[/x]{ESCAPES}", "reply": HOSTILE, "correct": False, "line": 1}]
    path = eval_store.result_path(eval_store.results_dir(resolved, home, run_dir.resolve()), identity)
    write_json_atomic(path, identity | {
        "scorer": "contains", "settings": {"max_new_tokens": 64}, "score": 0.0, "n": 1, "items": items,
        "model": run_dir.name, "model_id": model_id, "created": "2026-01-01T00:00:00+00:00",
        "key": eval_store.result_key(identity), "fingerprint": {}}, parents=True)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A workspace of shared files: a failed run naming a hostile model, a run with a hostile name, hostile datasets."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    home = tmp_path / "home"
    (home / "datasets").mkdir(parents=True)
    line = {"instruction": HOSTILE, "expected": f"[/x]{ESCAPES}", "response": HOSTILE}
    (home / "datasets" / EVIL_DATASET).write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    shutil.copy(REPO / "datasets" / "seed_instructions.jsonl", home / "datasets")
    write_run(home, "shared-run", model=HOSTILE, state="failed", message=HOSTILE, adapter=True)
    evil = write_run(home, EVIL_RUN, model="default", state="stopped", message=HOSTILE, adapter=True)
    store_result(home, evil, f"datasets/{EVIL_DATASET}")
    return home


def assert_plain(text: str, what: str) -> None:
    """No ESC byte (or any control character but newline and tab) reached the terminal; the markup is text."""
    assert "\x1b" not in text and "\x07" not in text, f"{what}: an escape sequence reached the terminal"
    assert text == clean(text), f"{what}: a control character reached the terminal"


# ----- the CLI -----------------------------------------------------------------------------------


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("COLUMNS", "400")  # rich's tables at full width: cells are not cut
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out


def test_cli_runs_lists_hostile_runs_as_plain_text(home, capsys, monkeypatch):
    code, out = run_cli(capsys, monkeypatch, "--home", str(home), "runs")
    assert code == 0
    assert_plain(out, "tui-ft runs")
    assert SHOWN in out  # the model and the message, markup included, as text
    assert "evil[reverse]run" in out
    code, out = run_cli(capsys, monkeypatch, "--home", str(home), "runs", "--json")
    assert code == 0 and "\x1b" not in out  # JSON escapes control characters (\u001b)
    assert {run["model"] for run in json.loads(out)} == {HOSTILE, "default"}  # the data itself is kept whole
    SECTION.add("cli-runs", "`tui-ft runs` (and `--json`)", "run folder name, run.json model, status.json message",
                "exit 0; no ESC byte on stdout; `colleague-model[/x]`, `[link=https://x]` printed as text; "
                "`--json` keeps the values, escaped by JSON")


def test_cli_models_and_data_show(home, capsys, monkeypatch, default_model_path):
    code, out = run_cli(capsys, monkeypatch, "--home", str(home), "models")
    assert code == 0
    assert_plain(out, "tui-ft models")
    assert "evil[reverse]run" in out  # the run with a hostile name is listed; shared-run's unknown model is skipped
    SECTION.add("cli-models", "`tui-ft models`", "run folder name", "exit 0; no ESC byte; the name printed as text")
    code, out = run_cli(capsys, monkeypatch, "--home", str(home), "data", "show", str(home / "datasets" / EVIL_DATASET))
    assert code == 0
    assert_plain(out, "tui-ft data show")
    assert "colleague-model[/x]" in out and "[link=https://x]" in out and "shared[reverse]" in out
    SECTION.add("cli-data-show", "`tui-ft data show FILE`", "dataset file name, a line's instruction and response",
                "exit 0; no ESC byte; the rendered example and the name printed as text")


def test_cli_data_check_prints_problems_of_a_hostile_file_as_plain_lines(tmp_path, capsys):
    bad = tmp_path / f"x{ESCAPES}.jsonl"
    bad.write_text(json.dumps({"instruction": HOSTILE, "nonsense": 1}) + "\n{bad\n", encoding="utf-8")
    code = main(["data", "check", str(bad)])
    captured = capsys.readouterr()
    assert code == 1
    for stream, text in (("stdout", captured.out), ("stderr", captured.err)):
        assert_plain(text, f"tui-ft data check ({stream})")
    lines = captured.out.splitlines()
    assert lines and all(line.startswith(f"{tmp_path}/x.jsonl:") for line in lines), lines  # the name, escapes gone
    assert any(":2: " in line for line in lines), lines  # still one path:line: message per problem
    SECTION.add("cli-data-check", "`tui-ft data check FILE`", "dataset file name, its lines",
                "exit 1; no ESC byte; one `path:line: message` a problem")


# ----- the dashboard -----------------------------------------------------------------------------


@pytest.fixture
def steady(monkeypatch):
    """As tests/conftest.py's steady_dashboard does for tests/ui: no pane built in the background, no GPU."""
    monkeypatch.setattr(TuiFtApp, "PREBUILT_MODES", ())
    monkeypatch.setattr(TuiFtApp, "FREEZE_HEAP_EVERY_S", None)
    monkeypatch.setattr("tui_ft.engine.models.devices.visible_gpu_count", lambda: 0)


def app_on(mode: str, home: Path, model_ref: str = "default") -> TuiFtApp:
    class OnePaneApp(TuiFtApp):
        DEFAULT_MODE = mode
        CSS_PATH = CSS

    return OnePaneApp(home, model_ref)


def screen_text(app) -> str:
    """What the terminal would show now: the text of the screen's cells, as the screenshot has it."""
    return app.export_screenshot().replace("&#160;", " ")


def visible_text(app) -> str:
    """The screen's characters run together: the screenshot splits a line wherever its style
    changes (a highlighted match inside an option), so a name can span several text elements."""
    import html
    import re

    return html.unescape("".join(re.findall(r">([^<]*)</text>", screen_text(app))))


def toasts(app) -> list[str]:
    return [notification.message for notification in app._notifications]


async def test_runs_pane_shows_hostile_runs_and_stays_up(home, steady):
    from tui_ft.ui.screens.runs import RunsScreen
    from tui_ft.ui.widgets.run_table import RunTable

    app = app_on("runs", home)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle_workers(pilot)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(RunTable)
        table.select_name("shared-run")
        await settle_workers(pilot)
        info = str(screen.query_one("#run-info", Static).render())
        assert "colleague-model[/x]" in info and SHOWN in info  # the model and the status message, as text
        assert_plain(screen_text(app), "Runs pane")
        await pilot.press("l")  # the worker's log
        await settle_workers(pilot)
        log = str(screen.query_one("#log-text", Static).render())
        assert f"loading {SHOWN}" in log
        assert_plain(screen_text(app), "Runs pane, worker log")
        table.select_name(EVIL_RUN)
        await pilot.pause()
        await pilot.press("space")  # marks the run: a toast names it
        await pilot.pause()
        assert any("evil[reverse]run" in message for message in toasts(app))
        text = screen_text(app)
        assert_plain(text, "Runs pane, toast")
        assert "evil[reverse]run" in text
        assert app.is_running
    SECTION.add("runs-pane", "Runs pane: run table, info line, worker log, the mark toast",
                "run folder name, run.json model, status.json message, worker.log",
                "stays up; no ESC on screen; `colleague-model[/x]` and `[link=https://x]` shown as text")


async def test_datasets_pane_shows_hostile_files_and_stays_up(home, steady, default_model_path):
    app = app_on("datasets", home)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle_workers(pilot)
        screen = app.screen
        table = screen.query_one("#files", DataTable)
        names = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
        assert "shared[reverse].jsonl" in names  # the escapes left out of the name, the markup kept as text
        table.move_cursor(row=names.index("shared[reverse].jsonl"))
        await settle_workers(pilot)
        example = screen.query_one("#example", Static).render().plain
        assert "colleague-model[/x]" in example and MARKUP in example, example  # the real tokenizer's rendering
        assert "shared[reverse].jsonl" in str(screen.query_one("#summary", Static).render())
        assert_plain(screen_text(app), "Datasets pane")
        assert app.is_running
    SECTION.add("datasets-pane", "Datasets pane: file list, summary, example rendered by the tokenizer",
                "dataset file name, a line's instruction and response",
                "stays up; no ESC on screen; the name and the lines shown as text")


async def test_benchmark_pane_shows_hostile_names_and_items(home, steady):
    from tui_ft.ui.widgets.bench_grid import BenchGrid
    from tui_ft.ui.widgets.bench_items import BenchItemsScreen

    class BenchApp(TuiFtApp):
        DEFAULT_MODE = "benchmark"
        CSS_PATH = CSS

    app = BenchApp(home)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle_workers(pilot)
        grid = app.screen.query_one(BenchGrid)
        headers = [str(column.label) for column in grid.columns.values()]
        assert "shared[reverse] %" in headers, headers
        labels = [str(grid.get_row_at(i)[0]).strip(" ●") for i in range(grid.row_count)]
        assert "evil[reverse]run" in labels, labels
        text = screen_text(app)
        assert_plain(text, "Benchmark pane")
        assert "shared[reverse]" in text and "evil[reverse]run" in text
        picker = app.screen.query_one("#bench-target", Select)
        picker.focus()
        await pilot.press("enter")  # the column picker's menu lists the hostile file's name
        await pilot.pause()
        assert_plain(screen_text(app), "Benchmark column picker")
        await pilot.press("escape")
        grid.focus()
        grid.move_cursor(row=labels.index("evil[reverse]run"), column=headers.index("shared[reverse] %"))
        await pilot.press("d")  # the stored result's items
        await pilot.pause()
        assert isinstance(app.screen, BenchItemsScreen)
        detail = str(app.screen.query_one("#bench-item-detail", Static).render())
        assert f"prompt: {SHOWN}" in detail and "expected: [/x]" in detail
        assert_plain(screen_text(app), "Benchmark items")
        assert app.is_running
    SECTION.add("benchmark-pane", "Benchmark pane: column headers and picker, row labels, a cell's items",
                "dataset file name, run folder name, a stored result's prompt, expected answer and reply",
                "stays up; no ESC on screen; names and items shown as text")


async def test_chat_pane_shows_hostile_model_names_errors_and_replies(home, steady, monkeypatch):
    """The load error names run.json's model (the real loader: the model is unknown, nothing loads)."""
    from tui_ft.engine.generation import chat_model

    app = app_on("chat", home, model_ref="shared-run")
    async with app.run_test(size=(160, 40)) as pilot:
        await settle_workers(pilot)
        assert any("colleague-model[/x]" in message for message in toasts(app)), toasts(app)
        status = str(app.screen.query_one("#status", Static).render())
        assert "colleague-model[/x]" in status
        text = screen_text(app)
        assert_plain(text, "Chat pane, load error")
        assert "colleague-model[/x]" in text
        assert app.is_running

    class EscapingModel:
        """A model whose reply carries the hostile text (a shared model's tokenizer can decode to ESC)."""

        has_adapter, template, context_length = True, "chat", 2048
        last_stats, last_notice = None, f"notice {HOSTILE}"

        def stream(self, messages, settings, should_stop=None, use_adapter=True):
            yield from (HOSTILE[:20], HOSTILE[20:])

    monkeypatch.setattr(chat_model, "load_chat_model", lambda ref, home, dtype="auto", fits=None: EscapingModel())
    app = app_on("chat", home, model_ref=EVIL_RUN)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle_workers(pilot)
        await pilot.press("h", "i", "enter")
        await settle_workers(pilot)
        for _ in range(3):
            await pilot.pause(0.1)  # the reply is painted every 50 ms
        text = screen_text(app)
        assert_plain(text, "Chat pane, reply")
        assert SHOWN in text and "evil[reverse]run" in text  # the reply, and the model's name in its title and the picker
        assert app.is_running
    SECTION.add("chat-pane", "Chat pane: model picker, status line, load-error toast, a streamed reply",
                "run folder name, run.json model (in the load error), the model's reply",
                "stays up; no ESC on screen; `colleague-model[/x]` shown as text in the toast and status")


async def test_train_pane_lists_hostile_names(home, steady):
    app = app_on("train", home)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle_workers(pilot)
        for field in ("#field-model", "#field-dataset"):
            select = app.screen.query_one(field, Select)
            select.focus()
            await pilot.press("enter")  # the menu lists the hostile run's and file's names
            await pilot.pause()
            text = screen_text(app)
            assert_plain(text, f"Train pane, {field}")
            if field == "#field-model":
                assert "evil[reverse]run" in visible_text(app)
            await pilot.press("escape")
            await pilot.pause()
            if field == "#field-dataset":  # a benchmark: not offered for LoRA, named in the note under the list
                assert "not for LoRA: shared[reverse].jsonl (benchmark)" in visible_text(app)
                assert_plain(screen_text(app), "Train pane, the dataset note")
        assert app.is_running
    SECTION.add("train-pane", "Train pane: model menu, dataset note", "run folder name, dataset file name",
                "stays up; no ESC on screen; the names shown as text")
