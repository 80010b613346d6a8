"""The conversation of the Chat pane: prompts and replies, one column or base and tuned side by side.

The widget keeps what was said (:class:`Exchange`) next to the widgets that show it, so the
pane can build each side's history, rate the last reply and export a transcript.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

from tui_ft.engine.generation.best_of_n import Candidate, format_reward
from tui_ft.safe_text import clean

SINGLE, BASE, TUNED = "reply", "base", "tuned"  # reply labels: one model, or the two compare columns


class ChatMessage(Static):
    """One prompt or reply: a title line and the text, which grows while a reply streams."""

    DEFAULT_CSS = """
    ChatMessage {
        padding: 0 1;
        margin: 0 0 1 0;
        border-left: wide $primary;
    }
    ChatMessage.assistant { border-left: wide $success; }
    ChatMessage.stopped { border-left: wide $warning; }
    ChatMessage.failed { border-left: wide $error; }
    """

    def __init__(self, title: str, text: str = "", role: str = "user", **kwargs):
        super().__init__(classes=role, **kwargs)
        self.title = title
        self.text = text
        self.suffix = ""  # a dim note after the text, such as (stopped)
        self.note = ""  # a dim last line: the reply's reward, or best-of-n's progress and candidate

    def on_mount(self) -> None:
        self.show()

    def set_text(self, text: str) -> None:
        """Show the reply so far (it grows while the reply streams)."""
        self.text = text
        self.show()

    def set_note(self, note: str) -> None:
        """Show ``note`` (a reward, best-of-n's progress) on a dim line under the text; empty hides it."""
        if note != self.note:
            self.note = note
            self.show(self.suffix)

    def show(self, suffix: str = "") -> None:
        """Repaint the title and text; ``suffix`` is a dim note such as ``(stopped)``."""
        self.suffix = suffix
        # The model's name and reply may carry escape sequences (a shared model's tokenizer): removed.
        content = Text(clean(self.title) + "\n", style="bold")
        content.append(clean(self.text) or ("…" if not suffix else ""))
        if suffix:
            content.append(f" {suffix}", style="dim italic")
        if self.note:
            content.append(f"\n{self.note}", style="italic cyan")
        self.update(content)


@dataclass(eq=False)  # compared and hashed by identity: the pane keeps a set of replies to repaint
class Reply:
    """One model's reply to a prompt.

    Attributes:
        label: ``reply`` (one model) or ``base`` / ``tuned`` (compare mode).
        model: The reference of the model that wrote it.
        use_adapter: Whether the run's adapter was on.
        text: The reply so far.
        stats: The engine's ``StreamStats`` once the reply ended.
        notice: The engine's notice (history truncated), if any.
        done: True once the reply ended (finished, stopped or failed).
        failed: True when the reply failed (nothing to judge).
        reward: The reward model's score of the text shown (None: not scored).
        best_of: How many replies are sampled for this one (1: best-of-n off).
        sampling: The sample being written now (best-of-n), -1 when none.
        candidates: The sampled replies, best reward first (best-of-n); the one shown is
            ``candidates[shown]``, and ``text``, ``reward`` and ``stats`` are its own.
    """

    label: str
    model: str
    use_adapter: bool
    text: str = ""
    stats: object = None
    notice: str = ""
    done: bool = False
    failed: bool = False
    reward: float | None = None
    best_of: int = 1
    sampling: int = -1
    candidates: list[Candidate] = field(default_factory=list)
    shown: int = 0
    widget: ChatMessage | None = field(default=None, repr=False)

    def show_candidate(self, index: int) -> None:
        """Make candidate ``index`` the reply: its text is rated, exported and continued from."""
        candidate = self.candidates[index]
        self.shown = index
        self.text, self.reward, self.stats, self.notice = candidate.text, candidate.reward, candidate.stats, candidate.notice

    def reward_note(self) -> str:
        """The reply's dim last line: ``reward +1.234``; best-of-n ``sampling 2/4…`` or ``best · 1/4 · reward +1.234``."""
        reward = "" if self.reward is None else f"reward {format_reward(self.reward)}"
        if self.sampling >= 0 and not self.done:
            return f"sampling {self.sampling + 1}/{self.best_of}…"
        if self.candidates and self.best_of > 1:
            place = f"{self.shown + 1}/{len(self.candidates)}" + (f" of {self.best_of}" if len(self.candidates) < self.best_of else "")
            parts = ["best" if self.shown == 0 and self.reward is not None else "", place, reward,
                     "ctrl+o next" if len(self.candidates) > 1 else ""]
            return " · ".join(part for part in parts if part)
        return reward


@dataclass
class Exchange:
    """A prompt and the replies to it, with the settings they were generated with."""

    prompt: str
    replies: dict[str, Reply]
    settings: dict
    system_prompt: str = ""

    def reply_text(self, label: str) -> str:
        """The text a side's history uses: its own reply, else the main reply (after a mode switch)."""
        for key in (label, TUNED, SINGLE, BASE):
            if key in self.replies:
                return self.replies[key].text
        return ""


class Conversation(VerticalScroll):
    """Every exchange of the current conversation, scrolled to the newest."""

    DEFAULT_CSS = """
    Conversation { height: 1fr; padding: 0 1; }
    Conversation .compare-row { height: auto; }
    Conversation .compare-row ChatMessage { width: 1fr; }
    Conversation .empty-hint { color: $text-muted; padding: 1 1; }
    """

    EMPTY_HINT = "Type a prompt and press Enter. Escape stops a reply; ctrl+b compares base and tuned; ctrl+r rates."

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.exchanges: list[Exchange] = []

    def on_mount(self) -> None:
        self.mount(Static(self.EMPTY_HINT, classes="empty-hint"))

    def add_exchange(self, exchange: Exchange, titles: dict[str, str]) -> None:
        """Show a new prompt and an empty message per reply (side by side when there are two)."""
        self.exchanges.append(exchange)
        self.query(".empty-hint").remove()
        self.mount(ChatMessage("You", exchange.prompt, "user"))
        for reply in exchange.replies.values():
            reply.widget = ChatMessage(titles[reply.label], role="assistant")
        widgets = [reply.widget for reply in exchange.replies.values()]
        self.mount(Horizontal(*widgets, classes="compare-row") if len(widgets) > 1 else widgets[0])
        self.scroll_end(animate=False)

    def history(self, label: str, system_prompt: str = "") -> list[dict[str, str]]:
        """The messages a side has seen so far (exchanges with an empty reply are left out)."""
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        for exchange in self.exchanges:
            reply = exchange.reply_text(label)
            if reply.strip():
                messages += [{"role": "user", "content": exchange.prompt}, {"role": "assistant", "content": reply}]
        return messages

    def transcript_turns(self) -> list[dict[str, str]]:
        """The conversation as transcript turns (compare replies carry their label)."""
        turns = []
        for exchange in self.exchanges:
            turns.append({"role": "user", "content": exchange.prompt})
            for reply in exchange.replies.values():
                # Every reply names its model: the conversation's model may change (ctrl+l) between turns.
                label = reply.model if reply.label == SINGLE else f"{reply.label}: {reply.model}"
                turns.append({"role": "assistant", "content": reply.text, "label": label})
        return turns

    def clear_exchanges(self) -> None:
        """Forget every exchange and show the hint again."""
        self.exchanges.clear()
        self.remove_children()
        self.mount(Static(self.EMPTY_HINT, classes="empty-hint"))
