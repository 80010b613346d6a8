"""The Train form loads a recipe (ctrl+l) and saves itself as one (ctrl+t); a bad recipe is shown, nothing changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tui_ft.engine.runs.recipe import config_from_recipe, read_recipe
from tui_ft.ui.screens.train import TrainScreen
from tui_ft.ui.widgets.recipe_dialog import RecipeDialog

from fake_runs import app_on, fresh_workspace

HOME = Path("/tmp/tui_ft_ui_train_recipes")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home() -> Path:
    home = fresh_workspace(HOME, datasets=("demo_veloria.jsonl", "seed_instructions.jsonl"))
    shutil.copytree(REPO / "recipes", home / "recipes")
    (home / "recipes" / "bad.yaml").write_text("model: default\nmethod: lora\nlerning_rate: 0.1\nepochs: many\n")
    return home


async def settled(pilot) -> TrainScreen:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    return pilot.app.screen


async def test_ctrl_l_fills_the_form_from_a_recipe_and_keeps_settings_it_has_no_field_for(home):
    app = app_on("train", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settled(pilot)
        form = screen.form
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert isinstance(app.screen, RecipeDialog)
        field = app.screen.query_one("#recipe-path", Input)
        field.value = "bad"
        await pilot.press("enter")
        await pilot.pause()
        shown = str(app.screen.query_one("#recipe-problems", Static).render())
        assert isinstance(app.screen, RecipeDialog)  # the dialog stays, with every problem at its line
        assert f"{home}/recipes/bad.yaml:3: lerning_rate: unknown setting (did you mean lr?)" in shown
        assert f"{home}/recipes/bad.yaml:4: epochs: cannot read 'many' as int" in shown
        field.value = "nothing-here"
        await pilot.press("enter")
        await pilot.pause()
        assert "No such recipe: nothing-here" in str(app.screen.query_one("#recipe-problems", Static).render())
        field.value = "veloria-lora"
        await pilot.press("enter")
        screen = await settled(pilot)
        assert isinstance(screen, TrainScreen)
        assert (form.value_of("lr"), form.value_of("epochs"), form.value_of("lora_rank"), form.value_of("name")) == (
            "0.001", "8", "16", "veloria")
        assert form.value_of("dataset") == str(home / "datasets" / "demo_veloria.jsonl")
        assert form.extra == {"eval_split": 0.0}
        assert str(form.query_one("#extra-settings", Static).render()) == "Also set (no field here): eval_split 0"
        config = form.config()
        assert (config.eval_split, config.lr, len(config.lora_targets)) == (0.0, 0.001, 7)
        assert any("The form holds the settings of veloria-lora.yaml" in n.message for n in app._notifications)


async def test_ctrl_t_saves_the_form_as_a_recipe_that_reads_back_the_same(home):
    app = app_on("train", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settled(pilot)
        form = screen.form
        form.query_one("#field-dataset").value = str(home / "datasets" / "seed_instructions.jsonl")
        form.query_one("#field-lr").value = "0.0005"
        form.query_one("#field-name").value = "mine"
        form.query_one("#field-report_to").value = "tensorboard,wandb"
        await pilot.pause()
        assert form.config().report_to == ["tensorboard", "wandb"]
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert isinstance(app.screen, RecipeDialog)
        assert app.screen.query_one("#recipe-path", Input).value == "recipes/mine.yaml"
        await pilot.press("enter")
        await settled(pilot)
        saved = home / "recipes" / "mine.yaml"
        recipe = read_recipe(saved)
        assert recipe.values["dataset"] == "seed_instructions.jsonl"  # by name: it works in any workspace
        assert "report_to: [tensorboard, wandb]\n" in saved.read_text()
        expected = form.config().to_dict() | {"dataset": "seed_instructions.jsonl"}
        assert config_from_recipe(recipe).to_dict() == expected
        await pilot.press("ctrl+t")
        await pilot.pause()
        await pilot.press("enter")  # the same name again: refused in the dialog, the file kept
        await pilot.pause()
        assert "already exists" in str(app.screen.query_one("#recipe-problems", Static).render())
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, TrainScreen) and read_recipe(saved).values == recipe.values


async def test_a_recipe_with_a_hub_dataset_fills_the_hub_dataset_field(home):
    (home / "recipes" / "hub.yaml").write_text("model: default\ndataset: hf:acme/instr:train\nmethod: lora\n")
    app = app_on("train", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settled(pilot)
        form = screen.form
        screen.load_recipe(home / "recipes" / "hub.yaml")
        await settled(pilot)
        assert form.value_of("dataset_hub") == "hf:acme/instr:train" and form.value_of("dataset") == ""
        assert form.config().dataset == "hf:acme/instr:train"  # typed there, it wins over the list
        form.query_one("#field-dataset_hub").value = ""
        form.query_one("#field-dataset").value = str(home / "datasets" / "seed_instructions.jsonl")
        assert form.config().dataset == str(home / "datasets" / "seed_instructions.jsonl")
