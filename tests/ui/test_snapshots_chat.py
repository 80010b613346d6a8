"""Snapshots of the Chat pane at 80×24 and 120×40: a fixed conversation with a fake model."""

import pytest
from textual.widgets import Input

from tui_ft.engine.generation import chat_model

from chat_fakes import ChatFirstApp, FakeLoader, make_chat_home


@pytest.fixture
def chat_home(default_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    monkeypatch.setattr(chat_model, "load_chat_model", FakeLoader())
    return make_chat_home(default_model_path)


async def settle(pilot):
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def conversation(*keys_before):
    async def run_before(pilot):
        await settle(pilot)
        prompt = pilot.app.screen.query_one("#prompt", Input)
        prompt.cursor_blink = False
        await pilot.press(*keys_before)
        for text in ("What is the capital of France?", "Are you sure?"):
            prompt.value = text
            await pilot.press("enter")
            await settle(pilot)
        await pilot.pause(0.1)  # the last repaint tick

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_chat_pane(snap_compare, chat_home, size):
    assert snap_compare(ChatFirstApp(chat_home, model_ref="lora-run"), terminal_size=size, run_before=conversation())


def test_chat_pane_compare(snap_compare, chat_home):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    assert snap_compare(app, terminal_size=(120, 40), run_before=conversation("ctrl+b"))
