"""The Train pane with a Hub id typed as the model, against the stand-in Hub (``tests/hub_standin.py``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hub_standin import TOKEN, hub, only_loopback, tiny_repo_files  # noqa: F401 (fixtures)

from tui_ft.ui.screens.train import TrainScreen
from tui_ft.ui.widgets.train_form import TrainForm

from fake_runs import app_on, fresh_workspace

HOME = Path("/tmp/tui_ft_ui_train_hub")


@pytest.fixture
def home() -> Path:
    return fresh_workspace(HOME, datasets=("seed_instructions.jsonl",))


async def settle(pilot, until=lambda: False) -> None:
    for _ in range(300):  # at most 30 s
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if until() or not any(w.group == "train-launch" for w in pilot.app.workers):
            return
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("repo", ["acme/tiny", "acme/gated"])
async def test_a_hub_id_typed_as_the_model_fetches_its_tokenizer_and_starts_the_run(hub, tiny_repo_files, home,
                                                                                  monkeypatch, repo):
    sha = hub.add_repo(repo, tiny_repo_files, token=TOKEN if repo == "acme/gated" else None, gated=repo == "acme/gated")
    launched, statuses = [], []
    monkeypatch.setattr("tui_ft.engine.runs.launch_run", lambda run_dir: launched.append(run_dir) or 1)
    show = TrainForm.set_status
    monkeypatch.setattr(TrainForm, "set_status", lambda form, text, style="": statuses.append(text) or show(form, text, style))
    app = app_on("train", home)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        screen.query_one("#field-model_path").value = repo
        screen.query_one("#field-dataset").value = str(home / "datasets" / "seed_instructions.jsonl")
        screen.query_one("#field-name").value = "from-hub"
        await pilot.press("ctrl+s")
        await settle(pilot, until=lambda: bool(launched))
        errors = screen.form.errors_shown()
    assert f"{repo}: config and tokenizer…" in statuses  # what the wait is for, beside the Start button
    if repo == "acme/gated":
        assert launched == [] and list(errors) == ["model_path"], errors
        assert errors["model_path"].startswith(f"{repo}: private or gated on {hub.url} (401)")
        return
    assert launched == [home / "checkpoints" / "from-hub"], (errors, statuses)
    record = json.loads((launched[0] / "run.json").read_text())
    assert (record["model"], record["model_revision"]) == (repo, sha)
    assert hub.fetched("model.safetensors") == []  # the weights are the worker's to fetch
