"""A reward model in the chat: every reply's reward, and best-of-n (sample n replies, keep the best).

This is the chapter's "human preference" loop made visible: a reward model trained on
preference pairs (``--method reward``) judges the replies a chat model writes, and a user can
compare its judgement with their own 1–5 ratings.

The judge is a :class:`~tui_ft.engine.evaluation.reward_judge.RewardJudge`, or anything with
its ``name`` and ``score(pairs)``. A reward model was trained on single-turn pairs (a prompt,
a reply), so in a conversation of several turns it judges a reply to the *last* user message
alone: the earlier turns and the system prompt are not shown to it (:func:`judged_prompt`).

Best-of-n is a choice made after generating, not a way of generating one reply, so ``best_of``
is not a field of :class:`GenerationSettings`: those settings identify stored benchmark
results, which a new field would have made all look new.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from tui_ft.engine.generation.sampling import GenerationSettings

MAX_BEST_OF = 16  # replies sampled for one answer at most: each costs a whole generation


def best_of_problems(best_of: int, settings: GenerationSettings) -> list[str]:
    """Why ``best_of`` cannot be used with ``settings`` (empty when it can).

    With temperature 0 every sample would be the same reply: that is refused with a line that
    says so, rather than a temperature picked behind the user's back (how random the replies
    are is theirs to set).
    """
    if isinstance(best_of, bool) or not isinstance(best_of, int) or not 1 <= best_of <= MAX_BEST_OF:
        return [f"best of n must be a whole number from 1 to {MAX_BEST_OF}, got {best_of}"]
    if best_of > 1 and settings.greedy:
        return [f"best of {best_of} needs sampling: set a temperature above 0 "
                "(greedy decoding writes the same reply every time)"]
    return []


def judged_prompt(messages: Sequence[dict]) -> str:
    """The text a reward model sees as the prompt: the conversation's last user message.

    Raises:
        ValueError: The conversation has no user message.
    """
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    raise ValueError("the conversation has no user message to judge a reply to")


def score_replies_to(judge, messages: Sequence[dict], replies: Sequence[str]) -> list[float]:
    """The reward of each reply to the conversation ``messages`` (judged as :func:`judged_prompt` says)."""
    prompt = judged_prompt(messages)
    return list(judge.score([(prompt, reply) for reply in replies])) if replies else []


@dataclass
class Candidate:
    """One sampled reply and its reward.

    Attributes:
        text: The reply.
        reward: What the reward model scored it (None when not scored).
        stats: The engine's :class:`~tui_ft.engine.generation.streaming.StreamStats`.
        notice: The engine's notice about the prompt (history truncated), if any.
        sample: Its place in the order of sampling (0 first).
    """

    text: str
    reward: float | None = None
    stats: object = None
    notice: str = ""
    sample: int = 0


@dataclass
class BestOf:
    """The outcome of :func:`sample_best_of`.

    Attributes:
        candidates: The replies, best reward first (ties keep the order of sampling).
        requested: How many replies were asked for.
        stopped: The user stopped the sampling before every reply was written.
    """

    candidates: list[Candidate] = field(default_factory=list)
    requested: int = 1
    stopped: bool = False

    @property
    def best(self) -> Candidate | None:
        """The reply with the highest reward (None when nothing was sampled)."""
        return self.candidates[0] if self.candidates else None


def sample_settings(settings: GenerationSettings, sample: int) -> GenerationSettings:
    """The settings of the ``sample``-th reply: a fixed seed moves on by one per reply.

    The same seed for every sample would write the same reply n times; ``seed + sample`` keeps
    a seeded best-of-n reproducible and its samples different.
    """
    return settings if settings.seed is None else replace(settings, seed=settings.seed + sample)


def sample_best_of(chat, judge, messages: list[dict], settings: GenerationSettings, best_of: int,
                   should_stop: Callable[[], bool] | None = None, use_adapter: bool = True,
                   on_piece: Callable[[int, str], None] | None = None, template: str | None = None) -> BestOf:
    """Sample ``best_of`` replies one after another, score them all with ``judge``, best first.

    Args:
        chat: A :class:`~tui_ft.engine.generation.chat_model.ChatModel`.
        judge: The reward model (``score(pairs)``).
        messages: The conversation, ending with the user's message.
        settings: Sampling settings (a temperature above 0; see :func:`best_of_problems`).
        best_of: How many replies to sample (1..``MAX_BEST_OF``).
        should_stop: Checked between tokens; True ends the sampling. The replies finished by
            then are kept; the one cut short is kept only when no reply was finished.
        use_adapter: False answers with a run's base model.
        on_piece: Called with ``(sample, piece)`` for each piece of text as it comes, and with
            an empty piece as each sample begins (progress shows before its first token).
        template: Overrides the chat model's template.

    Raises:
        ValueError: Invalid settings or ``best_of`` (the first problem).
    """
    problems = settings.problems() + best_of_problems(best_of, settings)
    if problems:
        raise ValueError(problems[0])
    extra = {"template": template} if template else {}
    finished: list[Candidate] = []
    cut: list[Candidate] = []
    stopped = False
    for sample in range(best_of):
        if should_stop is not None and should_stop():
            stopped = True
            break
        pieces = []
        if on_piece is not None:
            on_piece(sample, "")
        for piece in chat.stream(messages, sample_settings(settings, sample), should_stop=should_stop,
                                 use_adapter=use_adapter, **extra):
            pieces.append(piece)
            if on_piece is not None:
                on_piece(sample, piece)
        stats = chat.last_stats
        candidate = Candidate("".join(pieces), stats=stats, notice=chat.last_notice or "", sample=sample)
        if getattr(stats, "stopped_by", "") == "cancelled":
            stopped = True
            cut.append(candidate)
            break
        finished.append(candidate)
    candidates = finished or cut
    for candidate, reward in zip(candidates, score_replies_to(judge, messages, [c.text for c in candidates]),
                                 strict=True):
        candidate.reward = float(reward)
    candidates.sort(key=lambda c: -c.reward)  # stable: ties keep the order of sampling
    return BestOf(candidates, best_of, stopped)


def format_reward(reward: float) -> str:
    """A reward as the chat shows it: ``+1.234``, ``-0.300`` (the sign always shown)."""
    return f"{reward:+.3f}"
