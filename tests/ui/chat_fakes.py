"""A fake ChatModel for the Chat pane tests: scripted pieces, controllable pace, honours should_stop."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import orjson

import tui_ft.ui.app
from tui_ft.engine.generation.streaming import StreamStats
from tui_ft.ui.app import TuiFtApp

CHAT_HOME = Path("/tmp/tui_ft_ui_chat")
TUNED_PIECES = ["The ", "capital ", "of ", "France ", "is ", "Paris."]
BASE_PIECES = ["I ", "think ", "it ", "is ", "Lyon."]


class FakeChatModel:
    """Answers with fixed pieces: the tuned ones with the adapter on, the base ones without.

    ``hold_after``: stop yielding after that many pieces until ``release`` is set or
    ``should_stop()`` says stop, so a test can press Escape mid-reply without racing a timer.
    """

    def __init__(self, ref: str, has_adapter: bool, is_base: bool = False, hold_after: int | None = None):
        self.ref, self.has_adapter, self.is_base = ref, has_adapter, is_base
        self.template, self.tokenizer, self.model, self.context_length = "chat", None, None, 2048
        self.hold_after = hold_after
        self.release = threading.Event()
        self.calls: list[tuple[list[dict], bool]] = []
        self.last_stats, self.last_notice = None, ""

    def stream(self, messages, settings, should_stop=None, use_adapter=True):
        self.calls.append((messages, use_adapter))
        pieces = BASE_PIECES if self.is_base or (self.has_adapter and not use_adapter) else TUNED_PIECES
        stopped_by, count = "eos", 0
        try:
            for index, piece in enumerate(pieces):
                while self.hold_after is not None and index >= self.hold_after and not self.release.is_set():
                    if should_stop and should_stop():
                        break
                    time.sleep(0.005)
                if should_stop and should_stop():
                    stopped_by = "cancelled"
                    break
                time.sleep(0.01)
                count += 1
                yield piece
        finally:
            self.last_notice = "history truncated: 1 turn dropped" if len(messages) > 3 else ""
            self.last_stats = StreamStats(prompt_tokens=12, new_tokens=count, time_to_first_token=0.25,
                                          tokens_per_s=40.0, stopped_by=stopped_by)


class FakeLoader:
    """Stands in for ``chat_model.load_chat_model``: one cached fake per reference."""

    def __init__(self, hold_after: int | None = None):
        self.loaded: dict[str, FakeChatModel] = {}
        self.hold_after = hold_after

    def __call__(self, ref, home, dtype="auto", fits=None):
        if ref not in self.loaded:
            self.loaded[ref] = FakeChatModel(ref, has_adapter=ref == "lora-run", is_base=ref == "default",
                                             hold_after=self.hold_after)
        return self.loaded[ref]


def make_chat_home(default_model_dir: Path) -> Path:
    """A workspace at a fixed path with an adapter run (``lora-run``) and a full-weights run (``full-run``)."""
    shutil.rmtree(CHAT_HOME, ignore_errors=True)
    (CHAT_HOME / "datasets").mkdir(parents=True)
    runs = CHAT_HOME / "checkpoints"
    config = {"model": "default", "model_path": str(default_model_dir), "template": "chat", "method": "lora"}
    (runs / "lora-run" / "adapter").mkdir(parents=True)
    (runs / "lora-run" / "run.json").write_bytes(orjson.dumps(config))
    (runs / "lora-run" / "adapter" / "adapter_config.json").write_text("{}")
    (runs / "full-run" / "model").mkdir(parents=True)
    (runs / "full-run" / "run.json").write_bytes(orjson.dumps({**config, "method": "full"}))
    (runs / "full-run" / "model" / "config.json").write_text("{}")
    (runs / "full-run" / "model" / "model.safetensors").write_text("")
    return CHAT_HOME


class ChatFirstApp(TuiFtApp):
    """The dashboard opened on the Chat pane: the Datasets pane (and its tokenizer) never loads."""

    DEFAULT_MODE = "chat"
    CSS_PATH = str(Path(tui_ft.ui.app.__file__).with_name("app.tcss"))
