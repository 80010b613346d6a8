"""The Train form's memory plan: one line that follows the fields, red when the run will not fit, and the refusal."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from tui_ft.ui.screens.train import TrainScreen

from fake_runs import app_on, fresh_workspace

HOME = Path("/tmp/tui_ft_ui_train_plan")


async def ready(pilot) -> TrainScreen:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    assert isinstance(pilot.app.screen, TrainScreen)
    return pilot.app.screen


def plan_line(screen: TrainScreen) -> Static:
    return screen.form.query_one("#memory-plan", Static)


def gigabytes(text: str) -> float:
    return float(text.split("≈ ")[1].split(" GB")[0])


async def test_plan_follows_the_fields_and_turns_red(default_model_path, monkeypatch):
    home = fresh_workspace(HOME, datasets=("seed_instructions.jsonl",))
    app = app_on("train", home)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        line = plan_line(screen)
        first = str(line.render())
        assert first.startswith("needs ≈ ") and first.endswith("of 24 GB on cpu")  # conftest pins the capacity
        assert not line.has_class("-over")

        screen.query_one("#field-max_length").value = "2048"
        await ready(pilot)
        longer = str(line.render())
        assert gigabytes(longer) > 2 * gigabytes(first)

        screen.query_one("#field-gradient_checkpointing").value = "true"
        await ready(pilot)
        assert gigabytes(str(line.render())) < gigabytes(longer)

        screen.query_one("#field-batch_size").value = "x"  # not a config: no plan rather than a stale one
        await ready(pilot)
        assert str(line.render()) == ""

        monkeypatch.setenv("TUI_FT_MEMORY_CAPACITY_BYTES", str(10**8))
        screen.query_one("#field-batch_size").value = "8"
        await ready(pilot)
        assert line.has_class("-over") and str(line.render()).endswith("of 100 MB on cpu: will not fit")


async def test_start_refused_by_the_plan_is_one_notification(default_model_path, monkeypatch):
    home = fresh_workspace(HOME, datasets=("seed_instructions.jsonl",))
    launched = []
    monkeypatch.setattr("tui_ft.engine.runs.launch_run", lambda run_dir: launched.append(run_dir) or 1)
    monkeypatch.setenv("TUI_FT_MEMORY_CAPACITY_BYTES", str(10**8))
    app = app_on("train", home)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        screen.query_one("#field-dataset").value = str(home / "datasets" / "seed_instructions.jsonl")
        await pilot.press("ctrl+s")
        await ready(pilot)
        notes = [n.message for n in app._notifications]
        assert len(notes) == 1 and "will not fit" in notes[0] and "ignore_memory_plan=true" in notes[0]
        assert "\n" not in notes[0]
        assert not launched and not list((home / "checkpoints").iterdir())
        assert "will not fit" in str(screen.form.query_one("#launch-status", Static).render())


async def test_summary_counts_examples_held_out_steps_and_times_from_an_earlier_run(default_model_path):
    from fake_runs import make_run

    home = fresh_workspace(HOME, datasets=("seed_instructions_20.jsonl",))
    app = app_on("train", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(pilot)
        shape = screen.form.query_one("#run-shape", Static)
        assert str(shape.render()) == ""  # no dataset chosen yet
        screen.query_one("#field-dataset").value = str(home / "datasets" / "seed_instructions_20.jsonl")
        screen.query_one("#field-batch_size").value = "4"
        screen.query_one("#field-epochs").value = "3"
        await ready(pilot)
        # 20 examples, 10 % held out: 18 trained in batches of 4 is 5 steps an epoch.
        assert str(shape.render()) == "20 examples: 18 trained, 2 held out · 5 steps an epoch · 15 steps (3 epochs)"

        screen.query_one("#field-max_steps").value = "8"
        await ready(pilot)
        assert str(shape.render()).endswith("· 8 steps (1.6 epochs)")

        # An earlier LoRA run of the same model on the same device: its speed times this one.
        make_run(home, "earlier", state="finished", steps=30, total=30, created=1)
        screen.query_one("#field-max_steps").value = "9"
        await ready(pilot)
        assert "tokens/s (as earlier)" in str(shape.render()) and "≈ " in str(shape.render())
