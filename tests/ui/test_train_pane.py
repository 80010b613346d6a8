"""Pilot tests of the Train pane: inline errors from the engine's checks, and a real detached run."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from textual.widgets import Select

from tui_ft.engine.runs import read_status, stop_run
from tui_ft.ui.screens.runs import RunsScreen
from tui_ft.ui.screens.train import TrainScreen
from tui_ft.ui.widgets.metric_plots import MetricPlot
from tui_ft.ui.widgets.run_table import RunTable

from fake_runs import app_on, fresh_workspace

HOME = Path("/tmp/tui_ft_ui_train")


@pytest.fixture
def home() -> Path:
    return fresh_workspace(HOME, datasets=("seed_instructions.jsonl", "seed_benchmark.jsonl"))


async def ready(pilot) -> TrainScreen:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    assert isinstance(pilot.app.screen, TrainScreen)
    return pilot.app.screen


def fill(screen: TrainScreen, **values: str) -> None:
    for name, value in values.items():
        screen.query_one(f"#field-{name}").value = value


async def test_bad_values_show_inline_errors_and_launch_nothing(home, monkeypatch):
    launched = []
    monkeypatch.setattr("tui_ft.engine.runs.launch_run", lambda run_dir: launched.append(run_dir) or 1)
    app = app_on("train", home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        form = screen.form
        assert app.focused is None  # no field takes keys on arrival: tab enters the form at the top
        await pilot.press("tab")
        assert isinstance(app.focused, Select) and app.focused.id == "field-model"

        # Text that is not a number is refused before the engine is asked; tab reaches the field
        # (the end-to-end test tabs through the whole form; two steps keep this one quick).
        form.query_one("#field-epochs").focus()
        await pilot.press("tab", "tab")
        assert app.focused.id == "field-lr"
        await pilot.press("ctrl+a", "ctrl+k", *"abc", "ctrl+s")
        await ready(pilot)
        # The unreadable field does not hide the others' problems: the engine checked the rest.
        assert form.errors_shown() == {"lr": "cannot read 'abc' as float", "dataset": "choose a dataset file"}
        assert app.focused.id == "field-dataset"  # the highest field in error

        fill(screen, dataset=str(home / "datasets" / "seed_instructions.jsonl"), lr="-1", lora_rank="0",
             batch_size="0", name="../x")
        await pilot.press("ctrl+s")
        await ready(pilot)
        errors = form.errors_shown()
        assert set(errors) == {"lr", "lora_rank", "batch_size", "name"}, errors
        assert "must be a positive number" in errors["lr"]
        assert "must be at least 1" in errors["lora_rank"] and "must be at least 1" in errors["batch_size"]
        assert "not a safe run name" in errors["name"]
        assert app.focused.id == "field-lora_rank"  # the highest field in error has the focus
        assert not screen.launching and launched == []
        assert list((home / "checkpoints").iterdir()) == []
        assert app.current_mode == "train"


async def test_an_empty_field_stands_for_the_default_it_shows_and_values_say_what_they_mean(home):
    app = app_on("train", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(pilot)
        form = screen.form

        def meaning(name: str) -> str:
            return str(form.query_one(f"#meaning-{name}").render())

        assert form.value_of("eval_every") == "0" and meaning("eval_every") == "about five evaluations"
        assert meaning("save_every") == "steps"  # "Save every 100 steps"
        assert meaning("lr") == "" and meaning("max_steps") == "every epoch runs"
        form.query_one("#field-eval_every").focus()
        await pilot.press("ctrl+a", "ctrl+k", "5", "0")
        assert meaning("eval_every") == "steps"
        fill(screen, batch_size="", seed="", eval_every="", lr="")
        await pilot.pause()
        assert form.query_one("#field-batch_size").placeholder == "8"  # grey: the value an empty field stands for
        assert meaning("eval_every") == "about five evaluations" and meaning("lr") == "the method's default, 0.0002"
        config = form.config()  # no "required": empty is the default
        assert (config.batch_size, config.seed, config.eval_every, config.lr) == (8, 42, 0, None)
        form.query_one("#field-method").value = "full"
        await pilot.pause()
        fill(screen, lr="")  # the method put its own default in the field: empty again
        await pilot.pause()
        assert meaning("lr") == "the method's default, 2e-05"


async def test_processes_field_checks_the_global_batch_and_records_nproc(home, monkeypatch):
    launched = []
    monkeypatch.setattr("tui_ft.engine.runs.launch_run", lambda run_dir: launched.append(run_dir) or 1)
    app = app_on("train", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(pilot)
        form = screen.form
        assert form.value_of("nproc") == "1"
        fill(screen, dataset=str(home / "datasets" / "seed_instructions.jsonl"), nproc="2", batch_size="3",
             max_steps="2", name="two-procs")
        await pilot.press("ctrl+s")
        await ready(pilot)
        assert "multiple of nproc (2)" in form.errors_shown()["batch_size"]
        assert launched == [] and list((home / "checkpoints").iterdir()) == []
        fill(screen, batch_size="4")
        await pilot.press("ctrl+s")
        for _ in range(100):
            if launched:
                break
            await asyncio.sleep(0.1)
            await pilot.pause()
    assert launched == [home / "checkpoints" / "two-procs"]
    config = json.loads((launched[0] / "run.json").read_text())
    assert (config["nproc"], config["batch_size"]) == (2, 4)


async def test_processes_field_starts_at_every_visible_gpu(home, monkeypatch):
    monkeypatch.setattr("tui_ft.engine.models.devices.visible_gpu_count", lambda: 2)
    app = app_on("train", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(pilot)
        form = screen.form
        assert form.value_of("nproc") == "2"
        # A count that arrives after the user typed a value leaves that value alone.
        fill(screen, nproc="3")
        form.use_all_gpus(4)
        assert form.value_of("nproc") == "3"
        # One GPU or none: the field stays at its default.
        fill(screen, nproc="1")
        form.use_all_gpus(1)
        assert form.value_of("nproc") == "1"


async def test_method_shows_its_fields_defaults_and_dataset_check(home):
    app = app_on("train", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(pilot)
        form = screen.form
        visible = lambda name: not form.query_one(f"#row-{name}").has_class("-hidden")  # noqa: E731
        assert visible("lora_rank") and not visible("freeze_layers") and not visible("beta")
        assert form.value_of("lr") == "0.0002"
        form.query_one("#field-method", Select).value = "full"
        await pilot.pause()
        assert form.value_of("lr") == "2e-05" and not visible("lora_rank")
        form.query_one("#field-method", Select).value = "freeze"
        await pilot.pause()
        assert visible("freeze_layers") and form.value_of("lr") == "5e-05"
        fill(screen, lr="0.001")  # a value the user chose survives a method change
        form.query_one("#field-method", Select).value = "dpo"
        await pilot.pause()
        assert visible("beta") and visible("lora_rank") and form.value_of("lr") == "0.001"
        await pilot.press("ctrl+o")  # the method's defaults: DPO through LoRA learns at 5e-4
        await pilot.pause()
        assert form.value_of("lr") == "0.0005" and form.value_of("beta") == "0.1"
        # DPO trains on preference pairs: neither the instruction set nor the benchmark is offered,
        # and the form says why beside the empty list.
        assert form._choices["field-dataset"] == []
        note = str(form.query_one("#dataset-note").render())
        assert note == "2 not for DPO: seed_benchmark.jsonl (benchmark), seed_instructions.jsonl (instruction)"
        await pilot.press("ctrl+s")
        await ready(pilot)
        assert form.errors_shown()["dataset"] == "choose a dataset file"
        assert list((home / "checkpoints").iterdir()) == []
        form.query_one("#field-method", Select).value = "lora"
        await pilot.pause()
        instructions = str(home / "datasets" / "seed_instructions.jsonl")
        assert form._choices["field-dataset"] == [("seed_instructions.jsonl · 8 examples", instructions)]
        assert str(form.query_one("#dataset-note").render()) == "1 not for LoRA: seed_benchmark.jsonl (benchmark)"


async def test_full_dpo_and_a_full_reward_model_get_their_own_learning_rate(home):
    app = app_on("train", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(pilot)
        form = screen.form
        visible = lambda name: not form.query_one(f"#row-{name}").has_class("-hidden")  # noqa: E731
        form.query_one("#field-method", Select).value = "dpo"
        await pilot.pause()
        assert form.value_of("lr") == "0.0005" and visible("dpo_mode") and not visible("reward_mode")
        form.query_one("#field-dpo_mode", Select).value = "full"  # every weight: 100x lower, as the engine's default
        await pilot.pause()
        assert form.value_of("lr") == "5e-06" and not visible("lora_rank")
        form.query_one("#field-dpo_mode", Select).value = "lora"
        await pilot.pause()
        assert form.value_of("lr") == "0.0005" and visible("lora_rank")
        form.query_one("#field-method", Select).value = "reward"
        await pilot.pause()
        assert form.value_of("lr") == "0.0002" and visible("reward_mode") and visible("lora_rank")
        fill(screen, lr="0.003")  # the user's own value stays whatever the mode
        form.query_one("#field-reward_mode", Select).value = "full"
        await pilot.pause()
        assert form.value_of("lr") == "0.003" and not visible("lora_rank") and not visible("dpo_mode")
        await pilot.press("ctrl+o")  # the defaults of a full reward model
        await pilot.pause()
        assert form.value_of("lr") == "1e-05"
        config = form.config()
        assert (config.method, config.reward_mode, config.lr) == ("reward", "full", 1e-05)


async def wait_for_state(pilot, screen: RunsScreen, name: str, states: tuple[str, ...], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        screen.poll_runs()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        row = screen.rows.get(name)
        state = row.info.state if row else None
        if state in states:
            return state
        await asyncio.sleep(0.5)
    raise AssertionError(f"{name} stayed {state}")


async def test_start_launches_a_detached_worker_and_shows_it_in_runs(home, tiny_model_dir):
    app = app_on("train", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(pilot)
        fill(screen, model_path=str(tiny_model_dir), dataset=str(home / "datasets" / "seed_instructions.jsonl"),
             max_steps="3", batch_size="2", save_every="0", name="pilot-run")
        await pilot.press("ctrl+s")
        run_dir = home / "checkpoints" / "pilot-run"
        try:
            await ready_runs(pilot)
            runs = app.screen
            assert app.current_mode == "runs" and isinstance(runs, RunsScreen)
            assert runs.selected == "pilot-run"
            assert (run_dir / "run.json").is_file()
            state = await wait_for_state(pilot, runs, "pilot-run", ("finished", "failed"), timeout=120)
            assert state == "finished", (run_dir / "worker.log").read_text()[-2000:]
            await wait_for_plot(pilot, runs, 3)
            table = runs.query_one(RunTable)
            assert str(table.get_cell("pilot-run", "step")) == "3/3"
            assert str(table.get_cell("pilot-run", "progress")) == "100%"
            loss = next(p for p in runs.query(MetricPlot) if p.spec.title == "Loss")
            assert loss.series()["train"].steps == [1, 2, 3]
            assert (run_dir / "adapter" / "adapter_config.json").is_file()
        finally:
            if run_dir.exists() and read_status(run_dir)["state"] in ("queued", "running"):
                stop_run(run_dir)


async def ready_runs(pilot, timeout: float = 90) -> None:
    """Wait until the launch worker has created the run and the pane has switched to Runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pilot.app.current_mode != "runs":
        await asyncio.sleep(0.2)
        await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, RunsScreen), pilot.app.screen.form.errors_shown()
    while time.monotonic() < deadline and screen.selected != "pilot-run":
        screen.poll_runs()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def wait_for_plot(pilot, screen: RunsScreen, steps: int) -> None:
    for _ in range(20):
        loss = next(p for p in screen.query(MetricPlot) if p.spec and p.spec.title == "Loss")
        if len(loss.series().get("train", [])) >= steps:
            return
        screen.poll_runs()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
