"""Pilot tests of the Chat pane: streaming, stop, compare, ratings, new conversation, export.

A fake ChatModel (tests/ui/chat_fakes.py) replaces ``chat_model.load_chat_model`` so the pane's
behaviour is tested in milliseconds; one test streams a real reply from a tiny model folder.
"""

import orjson
import pytest
from textual.widgets import Input, Static

from tui_ft.engine.generation import chat_model
from tui_ft.engine.generation.sampling import GenerationSettings
from tui_ft.ui.widgets.chat_conversation import ChatMessage, Conversation

from chat_fakes import BASE_PIECES, TUNED_PIECES, ChatFirstApp, FakeLoader, make_chat_home

FULL_TUNED = "".join(TUNED_PIECES)


@pytest.fixture
def chat_home(default_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))  # the model list must not depend on the machine
    return make_chat_home(default_model_path)


@pytest.fixture
def loader(monkeypatch):
    fake = FakeLoader()
    monkeypatch.setattr(chat_model, "load_chat_model", fake)
    return fake


async def settle(app, pilot):
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def open_chat(app, pilot):
    if app.current_mode != "chat":
        await pilot.press("4")
    await settle(app, pilot)
    return app.screen


async def ask(app, pilot, prompt: str, type_keys: bool = False):
    """Send a prompt: typed key by key, or (faster) put in the input; Enter sends it either way."""
    if type_keys:
        for key in prompt:
            await pilot.press("space" if key == " " else key)
    else:
        app.screen.query_one("#prompt", Input).value = prompt
    await pilot.press("enter")


def status(screen) -> str:
    return str(screen.query_one("#status", Static).render())


def replies(screen) -> list[ChatMessage]:
    return [m for m in screen.query(ChatMessage) if m.has_class("assistant")]


async def test_reply_streams_piece_by_piece_and_input_clears(chat_home, loader):
    loader.hold_after = 2
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        assert app.focused is screen.query_one("#prompt", Input)
        await ask(app, pilot, "Capital of France?", type_keys=True)
        assert screen.query_one("#prompt", Input).value == ""
        await pilot.wait_for_scheduled_animations()
        for _ in range(100):  # the first two pieces arrive while the rest is held back
            await pilot.pause(0.02)
            if replies(screen) and replies(screen)[0].text == "The capital ":
                break
        assert replies(screen)[0].text == "The capital "
        assert screen.streaming
        loader.loaded["lora-run"].release.set()
        await settle(app, pilot)
        assert replies(screen)[0].text == FULL_TUNED
        assert not screen.streaming
        assert "6 tokens · 40.0 tokens/s · first token 0.25 s" in status(screen)
        messages, use_adapter = loader.loaded["lora-run"].calls[0]
        assert messages == [{"role": "user", "content": "Capital of France?"}] and use_adapter is True
        # The second prompt carries the first exchange as history.
        await ask(app, pilot, "And Spain?")
        await settle(app, pilot)
        messages, _ = loader.loaded["lora-run"].calls[1]
        assert [m["content"] for m in messages] == ["Capital of France?", FULL_TUNED, "And Spain?"]
        assert "history truncated" not in status(screen)
        await ask(app, pilot, "And Italy?")  # the fake drops a turn past 3 messages, as the engine would
        await settle(app, pilot)
        assert "history truncated: 1 turn dropped" in status(screen)


async def test_escape_stops_mid_stream(chat_home, loader):
    loader.hold_after = 3
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        await ask(app, pilot, "Capital?")
        for _ in range(100):
            await pilot.pause(0.02)
            if replies(screen) and replies(screen)[0].text == "The capital of ":
                break
        await pilot.press("escape")
        await settle(app, pilot)
        reply = replies(screen)[0]
        assert reply.text == "The capital of "
        assert len(reply.text) < len(FULL_TUNED)
        assert reply.has_class("stopped")
        assert "stopped by you" in status(screen) and "3 tokens" in status(screen)
        assert not screen.streaming


async def test_compare_mode_answers_with_base_and_tuned(chat_home, loader):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        await pilot.press("ctrl+b")
        assert screen.compare
        await ask(app, pilot, "Capital?")
        await settle(app, pilot)
        base, tuned = replies(screen)
        assert base.title == "base · default" and base.text == "".join(BASE_PIECES)
        assert tuned.title == "tuned · lora-run" and tuned.text == FULL_TUNED
        assert base.parent is tuned.parent and base.region.y == tuned.region.y  # side by side
        assert base.region.x < tuned.region.x
        # One loaded model, the adapter off then on; no second copy loaded.
        assert [use for _, use in loader.loaded["lora-run"].calls] == [False, True]
        assert "default" not in loader.loaded
        assert "base: 5 tokens" in status(screen) and "tuned: 6 tokens" in status(screen)


async def test_compare_mode_of_a_full_weights_run_loads_its_base(chat_home, loader):
    app = ChatFirstApp(chat_home, model_ref="full-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        await pilot.press("ctrl+b")
        await settle(app, pilot)
        await ask(app, pilot, "Capital?")
        await settle(app, pilot)
        assert [r.text for r in replies(screen)] == ["".join(BASE_PIECES), FULL_TUNED]
        assert len(loader.loaded["default"].calls) == 1 and len(loader.loaded["full-run"].calls) == 1


async def test_compare_needs_a_run(chat_home, loader):
    app = ChatFirstApp(chat_home, model_ref="default")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        await pilot.press("ctrl+b")
        assert not screen.compare


async def test_rating_lands_in_ratings_jsonl_and_summary_updates(chat_home, loader):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        assert "no ratings yet" in str(screen.query_one("#ratings", Static).render())
        await ask(app, pilot, "Capital?")
        await settle(app, pilot)
        await pilot.press("ctrl+r", "5", "backspace", "4", "2", "3")
        await pilot.pause()
        assert app.screen is screen  # the bar closed after the third digit
        assert screen.query_one("#prompt", Input).value == ""  # digits never reached the input
        lines = (chat_home / "checkpoints" / "lora-run" / "ratings.jsonl").read_bytes().splitlines()
        record = orjson.loads(lines[-1])
        assert (record["helpfulness"], record["accuracy"], record["clarity"]) == (4, 2, 3)
        assert record["prompt"] == "Capital?" and record["reply"] == FULL_TUNED
        assert record["model"] == "lora-run" and record["use_adapter"] is True
        assert record["settings"]["temperature"] == 0.0 and record["settings"]["max_new_tokens"] == 256
        summary = str(screen.query_one("#ratings", Static).render())
        assert "1 rated · helpfulness 4.0 · accuracy 2.0 · clarity 3.0" in summary


async def test_rating_the_base_reply_in_compare_mode_goes_to_the_base_model(chat_home, loader):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(app, pilot)
        await pilot.press("ctrl+b")
        await ask(app, pilot, "Capital?")
        await settle(app, pilot)
        await pilot.press("ctrl+r", "b", "1", "1", "2")
        await pilot.pause()
        record = orjson.loads((chat_home / "ratings" / "default.jsonl").read_bytes().splitlines()[-1])
        assert record["reply"] == "".join(BASE_PIECES) and record["use_adapter"] is False
        assert (record["helpfulness"], record["clarity"]) == (1, 2)
        assert not (chat_home / "checkpoints" / "lora-run" / "ratings.jsonl").exists()


async def test_new_conversation_clears_history(chat_home, loader):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        await ask(app, pilot, "Capital?")
        await settle(app, pilot)
        assert len(screen.query(ChatMessage)) == 2
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert len(screen.query(ChatMessage)) == 0
        assert screen.query_one(Conversation).exchanges == []
        await ask(app, pilot, "Hello")
        await settle(app, pilot)
        messages, _ = loader.loaded["lora-run"].calls[-1]
        assert messages == [{"role": "user", "content": "Hello"}]


async def test_export_writes_markdown_with_the_turns(chat_home, loader):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(app, pilot)
        await ask(app, pilot, "Capital?")
        await settle(app, pilot)
        await pilot.press("ctrl+e")
        await pilot.pause()
        path_input = app.screen.query_one("#export-path", Input)
        assert path_input.value.startswith("transcripts/") and path_input.value.endswith("-lora-run.md")
        path_input.value = "out/chat.md"
        await pilot.press("enter")
        await pilot.pause()
        text = (chat_home / "out" / "chat.md").read_text()
        assert text.startswith("# Chat with lora-run")
        assert "## User\n\nCapital?" in text and f"## Assistant (lora-run)\n\n{FULL_TUNED}" in text


async def test_settings_dialog_validates_and_applies(chat_home, loader):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        dialog = app.screen
        dialog.query_one("#set-top_p", Input).value = "1.5"
        dialog.query_one("#set-temperature", Input).value = "0.7"
        dialog.query_one("#set-system", Input).value = "Answer in one word."
        dialog.query_one("#set-top_p", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog
        assert "top-p must be in (0, 1]" in str(dialog.query_one("#settings-error", Static).render())
        dialog.query_one("#set-top_p", Input).value = "0.9"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert (screen.settings.generation.temperature, screen.settings.generation.top_p) == (0.7, 0.9)
        await ask(app, pilot, "Capital?")
        await settle(app, pilot)
        messages, _ = loader.loaded["lora-run"].calls[-1]
        assert messages[0] == {"role": "system", "content": "Answer in one word."}


async def test_real_tiny_model_streams_a_reply(chat_home, tiny_model_dir):
    app = ChatFirstApp(chat_home, model_ref="full-run")  # its weights file is empty: loading fails
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        assert screen.chat is None and "full-run" in status(screen)
        await ask(app, pilot, f"/model {tiny_model_dir}")  # pick a model folder by path
        await settle(app, pilot)
        assert screen.chat is not None and screen.chat.ref == str(tiny_model_dir), status(screen)
        assert screen.query_one("#model").value == str(tiny_model_dir)
        # Random weights answer greedily with newlines only: sample (seeded) to get visible text.
        screen.settings.generation = GenerationSettings(max_new_tokens=6, temperature=1.0, seed=0)
        await ask(app, pilot, "Hi")
        await settle(app, pilot)
        assert screen.last_exchange() is not None, status(screen)
        stats = screen.last_exchange().replies["reply"].stats
        assert stats.new_tokens == 6 and stats.stopped_by == "length"
        assert replies(screen)[0].text.strip()
        assert replies(screen)[0].text == screen.last_exchange().replies["reply"].text
        assert "6 tokens" in status(screen) and "stopped at max new tokens" in status(screen)


async def test_model_picker_lists_default_and_runs_with_weights(chat_home, loader):
    (chat_home / "checkpoints" / "unfinished").mkdir()
    (chat_home / "checkpoints" / "unfinished" / "run.json").write_text('{"model": "default"}')
    app = ChatFirstApp(chat_home, model_ref="default")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        select = screen.query_one("#model")
        assert [value for _, value in select._options if isinstance(value, str)] == ["default", "full-run", "lora-run"]
        assert select.value == "default"
        await pilot.press("ctrl+l", "down", "down", "enter")  # open the list, go to lora-run, pick it
        await settle(app, pilot)
        assert screen.model_ref == "lora-run" and screen.chat is loader.loaded["lora-run"]
        assert app.focused is screen.query_one("#prompt", Input)


async def test_new_conversation_during_a_reply_stops_it(chat_home, loader):
    loader.hold_after = 1
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        await ask(app, pilot, "Capital?")
        await pilot.pause(0.1)
        assert screen.streaming
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert not screen.streaming and screen.query_one(Conversation).exchanges == []
        await ask(app, pilot, "Again")  # the pane takes a new prompt at once
        loader.loaded["lora-run"].release.set()
        await settle(app, pilot)
        assert replies(screen)[0].text == FULL_TUNED
