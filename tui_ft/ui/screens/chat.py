"""The Chat pane: streaming replies from any model or run, base and tuned side by side, ratings.

Loading a model and generating run in thread workers; the engine's ``ChatModel.stream`` does
the generating (:mod:`tui_ft.engine.generation.chat_model`), and the pane only shows the pieces it posts back. Pieces are collected as they
come and repainted every ~50 ms, so a fast model does not cost one repaint per token and a slow
one shows each token without waiting for the next.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input, Select, Static
from textual.worker import Worker, get_current_worker

from tui_ft.engine.evaluation.ratings import append_rating, ratings_path, read_ratings, summarize_ratings
from tui_ft.engine.generation.sampling import GenerationSettings
from tui_ft.engine.workspace import find_run_dir
from tui_ft.safe_text import clean, plain
from tui_ft.ui import keys
from tui_ft.ui.screens.chat_reward import RewardJudgingPane
from tui_ft.ui.widgets.chat_conversation import BASE, SINGLE, TUNED, Conversation, Exchange, Reply
from tui_ft.ui.widgets.chat_dialogs import ChatSettings, ExportScreen, SettingsScreen
from tui_ft.ui.widgets.chat_prompt import PromptInput
from tui_ft.ui.widgets.chat_rating import RatingScreen
from tui_ft.ui.widgets.chat_status import describe_replies, model_label
from tui_ft.ui.widgets.key_footer import KeyFooter
from tui_ft.ui.widgets.pane_tabs import PaneTabs

REPAINT_EVERY_S = 0.05  # at most ~20 repaints a second, however fast the model is


class ChatScreen(RewardJudgingPane):
    """Chat with a model or a run; a reward model, when picked, judges the replies (:mod:`.chat_reward`)."""

    BINDINGS = keys.CHAT_BINDINGS
    AUTO_FOCUS = "#prompt"
    TYPING_PANE = True
    DEFAULT_CSS = """
    ChatScreen #chat-top { height: 3; }
    ChatScreen #model { width: 2fr; max-width: 44; min-width: 30; }
    ChatScreen #ratings { width: 3fr; height: 3; padding: 0 1; color: $text-muted; content-align: left middle; }
    ChatScreen #status { height: auto; max-height: 2; }
    """

    compare: reactive[bool] = reactive(False)
    """Answer each prompt with the base model and the tuned run, side by side."""
    streaming: reactive[bool] = reactive(False)
    """A reply is being generated."""
    model_ref: reactive[str] = reactive("")
    """The model or run the next prompt goes to."""

    class ModelsListed(Message):
        """The models and runs to pick from were listed, and the finished reward models."""

        def __init__(self, models: list[dict], reward_runs: list[str]):
            super().__init__()
            self.models, self.reward_runs = models, reward_runs

    class ModelLoaded(Message):
        """A model (and, for compare mode, its base) finished loading, or failed to."""

        def __init__(self, ref: str, chat=None, base_chat=None, base_ref: str = "", error: str = ""):
            super().__init__()
            self.ref, self.chat, self.base_chat, self.base_ref, self.error = ref, chat, base_chat, base_ref, error

    class ReplyStreamed(Message):
        """More text of a reply arrived (of best-of-n's sample ``sample``; -1 when not sampling several)."""

        def __init__(self, reply: Reply, text: str, sample: int = -1):
            super().__init__()
            self.reply, self.text, self.sample = reply, text, sample

    class ReplyEnded(Message):
        """A reply ended: finished, stopped by the user, or failed; best-of-n's ``result`` judged by ``judge``."""

        def __init__(self, reply: Reply, stats=None, notice: str = "", error: str = "", result=None, judge=None):
            super().__init__()
            self.reply, self.stats, self.notice, self.error = reply, stats, notice, error
            self.result, self.judge = result, judge

    def __init__(self):
        super().__init__()
        self.chat = None  # the loaded ChatModel of model_ref
        self.base_chat = None  # a second ChatModel: the base of a full-weights run (compare mode)
        self.base_ref = ""  # the base model reference of a run
        self.loaded_ref = ""  # which reference self.chat belongs to
        self.settings = ChatSettings(GenerationSettings())
        self.pending_prompt = ""  # typed while the model was loading; sent once it is ready
        self.models: list[dict] = []
        self.active_replies: set[Reply] = set()  # replies still being generated (also after a new conversation)
        self.unpainted: set[Reply] = set()  # replies whose new text is not on screen yet

    def compose(self) -> ComposeResult:
        yield PaneTabs("chat")
        with Horizontal(id="chat-top"):
            yield Select([], id="model", allow_blank=True, prompt="model or run")
            yield Static("", id="ratings")
        yield Conversation(id="conversation")
        yield Static("", id="status", classes="status-line")
        yield PromptInput(placeholder="Ask something… (Enter sends)", id="prompt")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.set_interval(REPAINT_EVERY_S, self.repaint_replies)
        self.choose_model(self.app.model_ref)

    def on_screen_resume(self) -> None:
        self.list_models()  # runs that finished since the pane was last shown become choices
        self.query_one("#prompt", Input).focus()

    # -- workers -------------------------------------------------------------------------

    @work(thread=True, group="chat-models", exclusive=True, exit_on_error=False, description="Listing models")
    def list_models(self) -> None:
        from tui_ft.engine.models import list_models, list_reward_models

        self.post_message(self.ModelsListed(list_models(self.app.home), list_reward_models(self.app.home)))

    @work(thread=True, group="chat-load", exclusive=True, exit_on_error=False, description="Loading the model")
    def load_models(self, ref: str, with_base: bool) -> None:
        from tui_ft.engine.generation import chat_model
        from tui_ft.engine.models import ModelError
        from tui_ft.engine.runs.folder import read_run_config
        from tui_ft.engine.runs.memory_plan import check_loading

        home = self.app.home
        try:
            # Refused before loading when it will not fit: loaded anyway, it would take the dashboard down.
            chat = chat_model.load_chat_model(ref, home, fits=check_loading)
            run_dir = find_run_dir(ref, home)
            config = read_run_config(run_dir) if run_dir else {}
            base_ref = str(config.get("model") or config.get("model_path") or "")
            # An adapter run answers as its base with the adapter off; a full-weights run needs
            # its base model loaded next to it.
            base_chat = None
            if with_base and base_ref and not chat.has_adapter:
                base_chat = chat_model.load_chat_model(base_ref, home, fits=check_loading)
            self.post_message(self.ModelLoaded(ref, chat, base_chat, base_ref))
        except (ModelError, OSError, ValueError) as error:
            line = (str(error).splitlines() or [type(error).__name__])[0]
            self.post_message(self.ModelLoaded(ref, error=line if isinstance(error, ModelError) else f"could not load {ref}: {line}"))

    @work(thread=True, group="chat-reply", exclusive=True, exit_on_error=False, description="Generating a reply")
    def stream_replies(self, jobs: list[tuple[Reply, object, list[dict]]], settings: GenerationSettings,
                       judge=None) -> None:
        from tui_ft.engine.generation.best_of_n import sample_best_of

        worker = get_current_worker()
        for reply, chat, messages in jobs:
            if worker.is_cancelled:  # stopped during the first column: the second is not started
                self.post_message(self.ReplyEnded(reply, notice="not started"))
                continue
            # The engine runs one reply at a time per model, so a stopped reply that is still
            # finishing its last token makes this one wait instead of racing it.
            try:
                if reply.best_of > 1:  # n samples, judged here: the worker's thread, not the UI's
                    result = sample_best_of(chat, judge, messages, settings, reply.best_of,
                                            should_stop=lambda: worker.is_cancelled, use_adapter=reply.use_adapter,
                                            on_piece=lambda sample, piece, reply=reply: self.post_message(
                                                self.ReplyStreamed(reply, piece, sample)))
                    self.post_message(self.ReplyEnded(reply, result=result, judge=judge))
                    continue
                for piece in chat.stream(messages, settings, should_stop=lambda: worker.is_cancelled,
                                         use_adapter=reply.use_adapter):
                    self.post_message(self.ReplyStreamed(reply, piece))
            except Exception as error:  # a failing model must end the reply, not leave it "streaming"
                self.post_message(self.ReplyEnded(reply, error=str(error).splitlines()[0] if str(error) else repr(error)))
                continue
            self.post_message(self.ReplyEnded(reply, chat.last_stats, chat.last_notice or ""))

    # -- events --------------------------------------------------------------------------

    @on(ModelsListed)
    def show_models(self, message: ModelsListed) -> None:
        self.models, self.reward_runs = message.models, message.reward_runs
        self.refresh_model_options()

    @on(Select.Changed, "#model")
    def model_picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.model_ref:
            self.choose_model(event.value)
        self.query_one("#prompt", Input).focus()

    @on(ModelLoaded)
    def model_loaded(self, message: ModelLoaded) -> None:
        if message.ref != self.model_ref:
            return  # the user picked another model meanwhile
        if message.error:
            self.set_status(plain(message.error, style="red"))
            self.notify(message.error, severity="error", title="Model")
            self.pending_prompt = ""
            return
        self.chat, self.base_chat, self.base_ref, self.loaded_ref = message.chat, message.base_chat, message.base_ref, message.ref
        mode = " · compare: base and tuned" if self.compare else ""
        self.set_status(f"{self.model_ref} ready ({message.chat.template} template){mode}")
        if self.pending_prompt:
            prompt, self.pending_prompt = self.pending_prompt, ""
            self.send(prompt)

    @on(Input.Submitted, "#prompt")
    def prompt_submitted(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt:
            return
        if prompt.startswith("/model "):  # pick a model folder by path, from the keyboard
            event.input.clear()
            self.choose_model(prompt.removeprefix("/model ").strip())
            return
        if self.streaming:
            self.notify("A reply is being generated: Escape stops it.", severity="warning")
            return
        event.input.clear()
        if not self.model_ready():
            self.pending_prompt = prompt
            self.set_status(f"loading {self.model_ref}… your prompt is sent when it is ready")
            return
        self.send(prompt)

    @on(ReplyStreamed)
    def reply_streamed(self, message: ReplyStreamed) -> None:
        reply = message.reply
        if message.sample != reply.sampling:  # best-of-n's next sample: shown in place of the last
            reply.sampling, reply.text = message.sample, ""
            self.show_reward(reply)
            self.set_status(f"sampling {message.sample + 1}/{reply.best_of} with {reply.model}… (Escape stops)")
        reply.text += message.text
        self.unpainted.add(reply)  # shown by the next repaint_replies tick

    def repaint_replies(self) -> None:
        """Show the text that arrived since the last tick (called every ``REPAINT_EVERY_S``)."""
        if not self.unpainted:
            return
        for reply in self.unpainted:
            if reply.widget is not None:
                reply.widget.set_text(reply.text)
        self.unpainted.clear()
        self.query_one(Conversation).scroll_end(animate=False)

    @on(ReplyEnded)
    def reply_ended(self, message: ReplyEnded) -> None:
        reply = message.reply
        reply.done, reply.stats, reply.notice = True, message.stats, message.notice or message.error
        reply.failed = bool(message.error)
        self.repaint_replies()
        if message.result is not None and message.result.candidates:  # best-of-n: the best is shown first
            reply.candidates = message.result.candidates
            reply.show_candidate(0)
            if reply.widget is not None:
                reply.widget.set_text(reply.text)
        stopped = message.error or message.notice == "not started" or getattr(reply.stats, "stopped_by", "") == "cancelled"
        stopped = stopped or (message.result is not None and message.result.stopped)
        if reply.widget is not None:
            reply.widget.set_class(bool(message.error), "failed")
            reply.widget.set_class(bool(stopped) and not message.error, "stopped")
            reply.widget.show("(failed)" if message.error else "(stopped)" if stopped else "")
        if message.error:
            self.notify(message.error, severity="error", title="Generation")
        self.active_replies.discard(reply)
        self.streaming = bool(self.active_replies)
        self.reward_after_reply(reply, message.judge)
        exchange = self.last_exchange()
        if exchange is not None and reply in exchange.replies.values():
            self.set_status(describe_replies(list(exchange.replies.values()), self.streaming))

    def worker_failed(self, worker: Worker) -> None:
        if worker.group == "chat-reply":
            self.active_replies.clear()
            self.streaming = False
        elif worker.group == "chat-load":
            self.pending_prompt = ""
            self.set_status(plain(f"could not load {self.model_ref}: {worker.error}", style="red"))

    # -- helpers -------------------------------------------------------------------------

    def refresh_model_options(self) -> None:
        refs = [m["ref"] for m in self.models]
        # Run names and folders label the options: Text, as a str label would be read as markup.
        options = [(plain(model_label(m)), m["ref"]) for m in self.models]
        if self.model_ref and self.model_ref not in refs:  # a folder picked by path
            options.append((plain(model_label({"ref": self.model_ref, "kind": "folder"})), self.model_ref))
        select = self.query_one("#model", Select)
        with self.prevent(Select.Changed):
            select.set_options(options)
            if self.model_ref:
                select.value = self.model_ref

    def choose_model(self, ref: str) -> None:
        """Make ``ref`` the model of the next prompts and load it in the background."""
        self.stop_reply()
        self.model_ref = ref
        self.chat = self.base_chat = None
        self.loaded_ref = ""
        self.refresh_model_options()
        self.refresh_ratings()
        if self.compare and find_run_dir(ref, self.app.home) is None:
            self.compare = False
            self.notify("Compare mode needs a run; it is off for this model.")
        self.set_status(f"loading {ref}…")
        self.load_models(ref, self.compare)

    def model_ready(self) -> bool:
        if self.chat is None or self.loaded_ref != self.model_ref:
            return False
        return not (self.compare and not self.chat.has_adapter and self.base_chat is None)

    def send(self, prompt: str) -> None:
        """Start the reply (or the two compare replies) to ``prompt``."""
        conversation = self.query_one(Conversation)
        system = self.settings.system_prompt
        ref, base_ref = self.model_ref, self.base_ref or "base"
        adapter = bool(self.chat.has_adapter)
        if self.compare:
            # The base answers from its own model (full-weights run) or from the run's model
            # with the adapter switched off.
            replies = {
                BASE: (Reply(BASE, base_ref, use_adapter=False), self.base_chat or self.chat),
                TUNED: (Reply(TUNED, ref, use_adapter=adapter), self.chat),
            }
            titles = {BASE: f"base · {base_ref}", TUNED: f"tuned · {ref}"}
        else:
            replies = {SINGLE: (Reply(SINGLE, ref, use_adapter=adapter), self.chat)}
            titles = {SINGLE: ref}
        jobs = [(reply, chat, conversation.history(label, system) + [{"role": "user", "content": prompt}])
                for label, (reply, chat) in replies.items()]
        settings = self.settings.generation
        best_of = self.settings.best_of
        if best_of > 1 and self.judge is None:
            why = "is still loading" if self.reward_run else "is not picked (ctrl+w)"
            self.notify(f"Best of {best_of} needs a reward model to pick the best, and it {why}: one reply for now.",
                        severity="warning")
            best_of = 1
        exchange = Exchange(prompt, {label: reply for label, (reply, _) in replies.items()},
                            asdict(settings) | {"best_of": best_of}, system)
        for reply in exchange.replies.values():
            reply.best_of = best_of
        conversation.add_exchange(exchange, titles)
        self.active_replies.update(exchange.replies.values())
        self.streaming = True
        self.set_status(f"generating with {ref}… (Escape stops)" if best_of == 1 else
                        f"sampling {best_of} replies with {ref}… (Escape stops)")
        self.stream_replies(jobs, settings, self.judge if best_of > 1 else None)

    def last_exchange(self) -> Exchange | None:
        exchanges = self.query_one(Conversation).exchanges
        return exchanges[-1] if exchanges else None

    def set_status(self, text: str | Text) -> None:
        """Show ``text`` under the conversation, and the reward model; a ``str`` is shown plain (it often holds a model's name)."""
        line = plain(text) if isinstance(text, str) else text.copy()
        if self.reward_status():
            line.append("  · ", style="dim").append(clean(self.reward_status()), style="cyan")
        self.query_one("#status", Static).update(line)

    def refresh_ratings(self) -> None:
        """Show the mode and the count and means of the picked model's ratings."""
        text = Text()
        if self.compare:
            text.append("compare: base │ tuned\n", style="bold")
        if self.model_ref:
            summary = summarize_ratings(read_ratings(ratings_path(self.model_ref, self.app.home)))
            text.append(clean(f"ratings of {self.model_ref}: {summary.line()}"))
        self.query_one("#ratings", Static).update(text)

    def watch_compare(self) -> None:
        self.refresh_ratings()

    # -- actions -------------------------------------------------------------------------

    def stop_reply(self) -> None:
        """Cancel the reply being generated, if any."""
        if self.streaming:
            self.workers.cancel_group(self, "chat-reply")
            self.set_status("stopping…")

    def action_stop(self) -> None:
        if self.streaming:
            self.stop_reply()
        else:
            # Idle: leave the prompt so digits switch panes again (tab comes back to it).
            self.set_focus(None)

    def action_toggle_compare(self) -> None:
        if not self.compare and find_run_dir(self.model_ref, self.app.home) is None:
            self.notify("Compare mode answers with a run and its base model: pick a run first (ctrl+l).", severity="warning")
            return
        if self.streaming:
            self.notify("Wait for the reply or stop it (Escape) first.", severity="warning")
            return
        self.compare = not self.compare
        if self.compare and self.model_ref and not self.model_ready():
            self.set_status(f"loading the base model of {self.model_ref}…")
            self.load_models(self.model_ref, True)
        else:
            self.set_status("compare: base and tuned side by side" if self.compare else "compare off")

    def action_rate(self) -> None:
        exchange = self.last_exchange()
        if exchange is None or self.streaming:
            self.notify("Nothing to rate yet: wait for a reply." if exchange is None else "Wait for the reply to end.")
            return
        labels = [TUNED, BASE] if TUNED in exchange.replies else [SINGLE]
        targets = [(label, f"the {label} reply ({exchange.replies[label].model})" if label != SINGLE
                    else f"the reply of {exchange.replies[label].model}") for label in labels]

        def save(result: dict | None) -> None:
            if result is None:
                return
            reply = exchange.replies[result.pop("target")]
            record = {"prompt": exchange.prompt, "reply": reply.text, "model": reply.model,
                      "use_adapter": reply.use_adapter, "settings": exchange.settings,
                      "system_prompt": exchange.system_prompt, **self.rating_extras(reply), **result}
            path = ratings_path(reply.model, self.app.home)
            try:
                append_rating(path, record)
            except OSError as error:  # a link or a FIFO planted as the ratings file: refused, not followed
                self.notify(f"Rating not saved: {error}", severity="error", markup=False)
                return
            self.refresh_ratings()
            self.notify(f"Rated {reply.model}: " + ", ".join(f"{k} {v}" for k, v in result.items()), title=path.name)

        self.app.push_screen(RatingScreen(targets), save)

    def action_new_conversation(self) -> None:
        self.stop_reply()
        self.query_one(Conversation).clear_exchanges()
        self.set_status("new conversation")
        self.query_one("#prompt", Input).focus()

    def action_settings(self) -> None:
        def save(result: ChatSettings | None) -> None:
            if result is not None:
                self.settings = replace(result, reward_model=self.reward_run)
                g = result.generation
                self.set_status(f"settings: temperature {g.temperature:g}, top-p {g.top_p:g}, top-k {g.top_k}, "
                                f"max new tokens {g.max_new_tokens}, repetition penalty {g.repetition_penalty:g}"
                                + (f", best of {result.best_of}" if result.best_of > 1 else ""))
                self.choose_reward(result.reward_model)  # says so in the status line when it changed

        self.app.push_screen(SettingsScreen(self.settings, self.reward_runs), save)

    def action_export(self) -> None:
        conversation = self.query_one(Conversation)
        if not conversation.exchanges:
            self.notify("Nothing to export yet.")
            return
        from tui_ft.engine.generation.transcript import default_transcript_path, export_transcript

        suggested = str(default_transcript_path(self.app.home, self.model_ref).relative_to(self.app.home))

        def write(path: str | None) -> None:
            if path is None:
                return
            try:
                written = export_transcript(conversation.transcript_turns(), self.model_ref, self.app.home, Path(path),
                                            self.settings.generation, self.settings.system_prompt)
            except OSError as error:
                self.notify(f"{path}: {error.strerror or error}", severity="error", title="Export")
                return
            self.notify(str(written), title="Transcript written")

        self.app.push_screen(ExportScreen(suggested), write)

    def action_pick_model(self) -> None:
        select = self.query_one("#model", Select)
        select.focus()
        select.action_show_overlay()
