"""Pilot tests of the Chat pane's reward model (issue 21): ctrl+w picks one, every reply shows its
reward, best-of-n shows the best with the others one key away, a broken reward run is one notification.

A fake chat model and a fake reward model (its reward is a reply's length / 10) keep these fast;
the real reward model is tested in tests/engine/test_best_of_n.py. One test loads a broken
reward run for real.
"""

from __future__ import annotations

import threading

import orjson
import pytest
from textual.widgets import Input, OptionList, Select, Static

from tui_ft.engine.evaluation import reward_judge
from tui_ft.engine.generation import chat_model
from tui_ft.engine.generation.streaming import StreamStats
from tui_ft.ui.screens.help import HelpScreen, key_rows
from tui_ft.ui.widgets.chat_conversation import ChatMessage
from tui_ft.ui.widgets.chat_reward import RewardPickerScreen

from chat_fakes import TUNED_PIECES, ChatFirstApp, make_chat_home
from polling import settle_workers

FULL_TUNED = "".join(TUNED_PIECES)
SAMPLES = ["Paris.", "It is Paris, the capital.", "Paris, France."]  # rewards 0.6, 2.5, 1.4


class SamplingChatModel:
    """Answers its n-th reply with ``SAMPLES[n % 3]``; ``hold_at`` holds a reply's first piece until ``release``."""

    def __init__(self, ref: str):
        self.ref, self.has_adapter, self.template, self.tokenizer, self.model = ref, True, "chat", None, None
        self.context_length, self.last_stats, self.last_notice = 2048, None, ""
        self.calls: list[tuple[list[dict], object]] = []
        self.hold_at: int | None = None
        self.release = threading.Event()

    def stream(self, messages, settings, should_stop=None, use_adapter=True):
        number = len(self.calls)
        self.calls.append((messages, settings))
        pieces = [SAMPLES[number % len(SAMPLES)]] if settings.temperature > 0 else TUNED_PIECES
        stopped_by, count = "eos", 0
        try:
            for piece in pieces:
                while number == self.hold_at and not self.release.is_set() and not (should_stop and should_stop()):
                    threading.Event().wait(0.005)
                if should_stop and should_stop():
                    stopped_by = "cancelled"
                    break
                count += 1
                yield piece
        finally:
            self.last_stats = StreamStats(12, count, 0.25, 40.0, stopped_by)


class FakeJudge:
    """Stands in for ``RewardJudge``: a reply's reward is its length / 10; ``broken`` fails to load."""

    scored: list[list[tuple[str, str]]] = []

    def __init__(self, ref, home):
        if ref == "broken":
            raise reward_judge.ModelError("broken: no final weights yet (no adapter/): wait for it to finish")
        self.name = ref
        self.released = False

    def load(self):
        """Nothing to load."""

    def score(self, pairs):
        FakeJudge.scored.append(list(pairs))
        return [len(reply) / 10 for _, reply in pairs]

    def release(self):
        self.released = True


@pytest.fixture
def chat_home(default_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    home = make_chat_home(default_model_path)
    for name in ("rm", "broken"):  # listed as finished reward models: method reward, final weights
        run = home / "checkpoints" / name
        (run / "adapter").mkdir(parents=True)
        (run / "run.json").write_bytes(orjson.dumps({"name": name, "model": "default", "method": "reward",
                                                     "model_path": "/nonexistent/model", "template": "chat"}))
        (run / "adapter" / "adapter_config.json").write_text("{}")
    return home


@pytest.fixture
def chat(monkeypatch):
    model = SamplingChatModel("lora-run")
    monkeypatch.setattr(chat_model, "load_chat_model", lambda ref, home, dtype="auto", fits=None: model)
    return model


@pytest.fixture
def fake_judge(monkeypatch):
    FakeJudge.scored = []
    monkeypatch.setattr(reward_judge, "RewardJudge", FakeJudge)
    return FakeJudge


async def open_chat(app, pilot):
    await settle_workers(pilot)
    return app.screen


async def ask(app, pilot, prompt: str):
    app.screen.query_one("#prompt", Input).value = prompt
    await pilot.press("enter")
    await settle_workers(pilot)


async def pick_reward(app, pilot, name: str):
    await pilot.press("ctrl+w")
    await pilot.pause()
    picker = app.screen
    assert isinstance(picker, RewardPickerScreen)
    options = picker.query_one(OptionList)
    labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
    assert labels == ["none (no rewards)", "broken", "rm"]
    assert options.highlighted == (picker.runs.index(picker.current) + 1 if picker.current else 0)  # the current one
    await pilot.press("home")
    for _ in range(labels.index(name) if name else 0):
        await pilot.press("down")
    await pilot.press("enter")
    await settle_workers(pilot)


def notes(screen) -> list[str]:
    return [m.note for m in screen.query(ChatMessage) if m.has_class("assistant")]


def status(screen) -> str:
    return str(screen.query_one("#status", Static).render())


async def test_ctrl_w_picks_a_reward_model_and_every_reply_shows_its_reward(chat_home, chat, fake_judge):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        await ask(app, pilot, "Capital?")
        assert notes(screen) == [""]  # no reward model yet
        await pick_reward(app, pilot, "rm")
        assert app.screen is screen and screen.judge is not None and screen.judge.name == "rm"
        # The reply written before the pick is scored too, against its prompt.
        assert fake_judge.scored[-1] == [("Capital?", FULL_TUNED)]
        assert notes(screen) == ["reward +3.100"]  # len(FULL_TUNED) / 10
        assert "reward: rm" in status(screen)
        await ask(app, pilot, "And Spain?")
        assert notes(screen) == ["reward +3.100", "reward +3.100"]
        assert fake_judge.scored[-1] == [("And Spain?", FULL_TUNED)]  # the last prompt, not the conversation
        assert "reward +3.100" in str(screen.query(ChatMessage).last().render())
        # The rating keeps the reward model's view next to the user's scores.
        await pilot.press("ctrl+r", "2", "3", "4")
        await pilot.pause()
        record = orjson.loads((chat_home / "checkpoints" / "lora-run" / "ratings.jsonl").read_bytes().splitlines()[-1])
        assert (record["reward"], record["reward_model"], record["helpfulness"]) == (3.1, "rm", 2)
        # None: the rewards go, the old model is released.
        judge = screen.judge
        await pick_reward(app, pilot, "")
        assert screen.judge is None and judge.released and notes(screen) == ["", ""]
        assert "reward:" not in status(screen)


async def test_compare_mode_scores_both_columns(chat_home, chat, fake_judge):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        await pick_reward(app, pilot, "rm")
        await pilot.press("ctrl+b")
        await ask(app, pilot, "Capital?")
        assert notes(screen) == ["reward +3.100", "reward +3.100"]


async def set_best_of(app, pilot, n: str, temperature: str = "0.8"):
    await pilot.press("ctrl+s")
    await pilot.pause()
    dialog = app.screen
    dialog.query_one("#set-best_of", Input).value = n
    dialog.query_one("#set-temperature", Input).value = temperature
    dialog.query_one("#set-reward", Select).value = "rm"
    dialog.query_one("#set-best_of", Input).focus()
    await pilot.press("enter")
    await settle_workers(pilot)
    return dialog


async def test_best_of_n_shows_the_best_and_ctrl_o_cycles_through_the_others(chat_home, chat, fake_judge):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        dialog = await set_best_of(app, pilot, "3", temperature="0")
        assert app.screen is dialog  # greedy: refused, said in the dialog
        assert "best of 3 needs sampling" in str(dialog.query_one("#settings-error", Static).render())
        dialog.query_one("#set-temperature", Input).value = "0.8"
        await pilot.press("enter")
        await settle_workers(pilot)
        assert app.screen is screen and screen.settings.best_of == 3 and screen.reward_run == "rm"
        assert screen.judge is not None  # picked in the settings dialog, loaded

        await ask(app, pilot, "Capital?")
        assert len(chat.calls) == 3 and [s.seed for _, s in chat.calls] == [None] * 3
        reply = screen.last_exchange().replies["reply"]
        assert [c.text for c in reply.candidates] == [SAMPLES[1], SAMPLES[2], SAMPLES[0]]  # best reward first
        assert [c.reward for c in reply.candidates] == pytest.approx([2.5, 1.4, 0.6])
        message = screen.query(ChatMessage).last()
        assert message.text == SAMPLES[1] and notes(screen) == ["best · 1/3 · reward +2.500 · ctrl+o next"]
        await pilot.press("ctrl+o")
        assert message.text == SAMPLES[2] and notes(screen) == ["2/3 · reward +1.400 · ctrl+o next"]
        assert "2/3 · reward +1.400" in status(screen)
        # The rating rates the reply shown, with its reward.
        await pilot.press("ctrl+r", "5", "5", "5")
        await pilot.pause()
        record = orjson.loads((chat_home / "checkpoints" / "lora-run" / "ratings.jsonl").read_bytes().splitlines()[-1])
        assert (record["reply"], record["reward"], record["candidate"], record["best_of"]) == (SAMPLES[2], 1.4, 2, 3)
        await pilot.press("ctrl+o", "ctrl+o")  # the third, then round to the best
        assert message.text == SAMPLES[1]
        # The conversation goes on from the reply shown.
        await pilot.press("ctrl+o")
        await ask(app, pilot, "Sure?")
        messages, _ = chat.calls[-1]
        assert [m["content"] for m in messages] == ["Capital?", SAMPLES[2], "Sure?"]


async def test_best_of_n_shows_its_progress_and_escape_keeps_what_was_sampled(chat_home, chat, fake_judge):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        await set_best_of(app, pilot, "4")
        chat.hold_at = 1  # the second sample waits
        screen.query_one("#prompt", Input).value = "Capital?"
        await pilot.press("enter")
        for _ in range(3000):  # polls the state; the ceiling is generous for a loaded machine
            if notes(screen) == ["sampling 2/4…"]:
                break
            await pilot.pause(0.02)
        assert notes(screen) == ["sampling 2/4…"] and "sampling 2/4" in status(screen)
        assert screen.streaming
        await pilot.press("escape")
        await settle_workers(pilot)
        reply = screen.last_exchange().replies["reply"]
        assert [c.text for c in reply.candidates] == [SAMPLES[0]]  # the finished one; the cut one is dropped
        assert notes(screen) == ["best · 1/1 of 4 · reward +0.600"]
        assert screen.query(ChatMessage).last().has_class("stopped") and not screen.streaming


async def test_best_of_n_without_a_reward_model_answers_once_and_says_why(chat_home, chat, fake_judge):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        await set_best_of(app, pilot, "3")
        await pick_reward(app, pilot, "")
        await ask(app, pilot, "Capital?")
        assert len(chat.calls) == 1 and notes(screen) == [""]
        assert any("Best of 3 needs a reward model" in n.message for n in app._notifications)


async def test_a_broken_reward_model_is_one_notification_and_the_pane_stays(chat_home, chat, fake_judge):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        await pick_reward(app, pilot, "broken")
        errors = [n for n in app._notifications if n.severity == "error"]
        assert [n.message for n in errors] == ["broken: no final weights yet (no adapter/): wait for it to finish"]
        assert app.screen is screen and screen.judge is None and screen.reward_run == ""
        await ask(app, pilot, "Capital?")  # the pane goes on, unjudged
        assert notes(screen) == [""] and screen.query(ChatMessage).last().text == FULL_TUNED


async def test_a_reward_run_whose_weights_do_not_load_is_one_notification(chat_home, chat):
    app = ChatFirstApp(chat_home, model_ref="lora-run")  # the real RewardJudge: its base model is missing
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot)
        await pick_reward(app, pilot, "rm")
        errors = [n for n in app._notifications if n.severity == "error"]
        assert len(errors) == 1 and errors[0].title == "Reward model", [n.message for n in errors]
        assert "\n" not in errors[0].message and screen.judge is None and screen.reward_run == ""
        assert "rm not loaded" in status(screen)


async def test_the_help_screen_lists_the_reward_keys(chat_home, chat):
    app = ChatFirstApp(chat_home, model_ref="lora-run")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(app, pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        rows = key_rows(app.screen.groups)
        chat_rows = rows[rows.index(("[bold]Chat[/]", "")):]
        assert any(key == "ctrl+w" and text.startswith("Pick a reward model") for key, text in chat_rows), chat_rows
        assert any(key == "ctrl+o" and text.startswith("Best-of-n: show the next") for key, text in chat_rows), chat_rows
