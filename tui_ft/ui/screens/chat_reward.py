"""The Chat pane's reward model: it scores every reply, and best-of-n shows its favourite.

:class:`RewardJudgingPane` is the part of the Chat pane (:class:`~tui_ft.ui.screens.chat.ChatScreen`
derives from it) that picks a reward run (ctrl+w, or the settings dialog), loads it once in a
thread worker (released when another is picked), and scores replies in another: each reply's
reward shows on its last line. Best-of-n itself runs in the pane's reply worker
(:func:`~tui_ft.engine.generation.best_of_n.sample_best_of`); ctrl+o shows the other candidates.

A reward model judges a reply to the last user message alone, as it was trained
(:mod:`tui_ft.engine.generation.best_of_n`).
"""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual import on, work
from textual.message import Message

from tui_ft.safe_text import clean
from tui_ft.ui.screens.pane import Pane
from tui_ft.ui.widgets.chat_conversation import Conversation, Reply
from tui_ft.ui.widgets.chat_dialogs import NO_REWARD_MODEL
from tui_ft.ui.widgets.chat_reward import RewardPickerScreen


def first_line(error: BaseException) -> str:
    """An error as one line for a notification."""
    return (str(error).splitlines() or [type(error).__name__])[0]


class RewardJudgingPane(Pane):
    """The reward model of the Chat pane; the pane provides ``settings``, ``streaming`` and ``set_status``."""

    class RewardModelLoaded(Message):
        """A reward run finished loading, or failed to."""

        def __init__(self, run: str, judge=None, error: str = ""):
            super().__init__()
            self.run, self.judge, self.error = run, judge, error

    class RepliesScored(Message):
        """The reward model scored replies (or candidates of best-of-n): ``scores`` is ``[(reply, candidate, reward)]``."""

        def __init__(self, judge, scores: list[tuple[Reply, int, float]], error: str = ""):
            super().__init__()
            self.judge, self.scores, self.error = judge, scores, error

    def __init__(self):
        super().__init__()
        self.judge = None  # the loaded RewardJudge of settings.reward_model (None while loading or none)
        self.reward_runs: list[str] = []  # finished reward runs, listed with the models
        self.being_scored: set[tuple[Reply, int]] = set()  # (reply, candidate or -1) in a scoring worker

    @property
    def reward_run(self) -> str:
        """The reward run picked (``""``: none); it may still be loading."""
        return self.settings.reward_model

    # -- workers -------------------------------------------------------------------------

    @work(thread=True, group="chat-reward-load", exclusive=True, exit_on_error=False, description="Loading the reward model")
    def load_reward_model(self, run: str) -> None:
        from tui_ft.engine.evaluation.reward_judge import RewardJudge

        try:
            judge = RewardJudge(run, self.app.home)
            judge.load()  # seconds: here, not in the first reply's scoring
        except Exception as error:  # noqa: BLE001  someone's reward run may be broken in any way: one line, the pane stays
            self.post_message(self.RewardModelLoaded(run, error=first_line(error)))
            return
        self.post_message(self.RewardModelLoaded(run, judge))

    @work(thread=True, group="chat-score", exit_on_error=False, description="Scoring replies")
    def score_texts(self, judge, jobs: list[tuple[Reply, int, str, str]]) -> None:
        """Score ``(reply, candidate, prompt, text)`` jobs in one go (candidate -1: the reply itself)."""
        try:
            rewards = judge.score([(prompt, text) for _, _, prompt, text in jobs])
        except Exception as error:  # noqa: BLE001  a failing reward model must not leave replies "being scored"
            self.post_message(self.RepliesScored(judge, [(reply, index, 0.0) for reply, index, _, _ in jobs],
                                                 first_line(error)))
            return
        self.post_message(self.RepliesScored(judge, [(reply, index, float(reward)) for (reply, index, _, _), reward
                                                     in zip(jobs, rewards, strict=True)]))

    # -- events --------------------------------------------------------------------------

    @on(RewardModelLoaded)
    def reward_model_loaded(self, message: RewardModelLoaded) -> None:
        if message.run != self.reward_run:  # another was picked meanwhile
            if message.judge is not None:
                message.judge.release()
            return
        if message.error:
            self.settings = replace(self.settings, reward_model=NO_REWARD_MODEL)
            self.notify(message.error, severity="error", title="Reward model")
            self.set_status(Text(clean(f"reward model {message.run} not loaded: {message.error}"), style="red"))
            return
        self.judge = message.judge
        self.set_status("reward model ready: every reply shows its reward")  # the status line names it
        self.score_unjudged()

    @on(RepliesScored)
    def replies_scored(self, message: RepliesScored) -> None:
        self.being_scored.difference_update((reply, index) for reply, index, _ in message.scores)
        if message.judge is not self.judge:
            return  # scored by a reward model no longer picked
        if message.error:
            self.notify(f"Scoring failed: {message.error}", severity="error", title="Reward model")
            return
        for reply, index, reward in message.scores:
            if index < 0:
                reply.reward = reward
            else:
                reply.candidates[index].reward = reward
                if index == reply.shown:
                    reply.reward = reward
            self.show_reward(reply)

    # -- helpers -------------------------------------------------------------------------

    def choose_reward(self, run: str) -> None:
        """Make ``run`` (``""``: none) the reward model; the one before is released, its rewards cleared."""
        if run == self.reward_run:
            return
        if self.judge is not None:
            self.judge.release()
        self.judge = None
        self.settings = replace(self.settings, reward_model=run)
        for reply in self.all_replies():  # the old model's rewards: not this one's
            reply.reward = None
            for candidate in reply.candidates:
                candidate.reward = None
            self.show_reward(reply)
        if run:
            self.set_status(f"loading the reward model {run}…")
            self.load_reward_model(run)
        else:
            self.workers.cancel_group(self, "chat-reward-load")
            self.set_status("no reward model: replies are not scored")

    def score_unjudged(self) -> None:
        """Score every finished reply (and best-of-n candidate) that has no reward yet, in a worker."""
        if self.judge is None:
            return
        jobs = []
        for exchange in self.query_one(Conversation).exchanges:
            for reply in exchange.replies.values():
                if not reply.done or reply.failed or reply.notice == "not started":
                    continue
                texts = [(i, c.text) for i, c in enumerate(reply.candidates) if c.reward is None] if reply.candidates \
                    else [(-1, reply.text)] if reply.reward is None else []
                jobs += [(reply, index, exchange.prompt, text) for index, text in texts
                         if (reply, index) not in self.being_scored]
        if jobs:
            self.being_scored.update((reply, index) for reply, index, _, _ in jobs)
            self.score_texts(self.judge, jobs)

    def all_replies(self) -> list[Reply]:
        return [reply for exchange in self.query_one(Conversation).exchanges for reply in exchange.replies.values()]

    def show_reward(self, reply: Reply) -> None:
        if reply.widget is not None:
            reply.widget.set_note(reply.reward_note())

    def reward_status(self) -> str:
        """What the status line adds about the reward model (empty when none is picked)."""
        if not self.reward_run:
            return ""
        return f"reward: {self.reward_run}" + ("" if self.judge is not None else " (loading…)")

    def rating_extras(self, reply: Reply) -> dict:
        """What a rating record keeps of the reward model's view of ``reply``, to compare with the user's scores."""
        extras = {}
        if reply.reward is not None and self.judge is not None:
            extras |= {"reward": reply.reward, "reward_model": self.judge.name}
        if reply.candidates:
            extras |= {"best_of": reply.best_of, "candidate": reply.shown + 1}
        return extras

    # -- actions -------------------------------------------------------------------------

    def action_pick_reward(self) -> None:
        def picked(run: str | None) -> None:
            if run is not None:
                self.choose_reward(run)

        self.app.push_screen(RewardPickerScreen(self.reward_runs, self.reward_run), picked)

    def action_next_candidate(self) -> None:
        exchanges = self.query_one(Conversation).exchanges
        replies = [r for r in exchanges[-1].replies.values() if len(r.candidates) > 1] if exchanges else []
        if not replies:
            self.notify("No other replies to show: best-of-n samples several (ctrl+s sets n, ctrl+w the reward model).")
            return
        if self.streaming:
            self.notify("Wait for the reply or stop it (Escape) first.", severity="warning")
            return
        for reply in replies:
            reply.show_candidate((reply.shown + 1) % len(reply.candidates))
            if reply.widget is not None:
                reply.widget.set_text(reply.text)
            self.show_reward(reply)
        self.set_status(" │ ".join(f"{r.label}: {r.reward_note()}" if len(replies) > 1 else r.reward_note()
                                   for r in replies))

    def reward_after_reply(self, reply: Reply, judge) -> None:
        """A reply ended: a best-of-n judged by a reward model no longer picked loses its rewards; score what needs it."""
        if judge is not None and judge is not self.judge:
            for candidate in reply.candidates:
                candidate.reward = None
            reply.reward = None
        self.show_reward(reply)
        self.score_unjudged()
