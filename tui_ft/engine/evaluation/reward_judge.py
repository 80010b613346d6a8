"""A reward model as a judge: ``tui-ft eval MODEL --reward REWARD_RUN --prompts FILE``.

The model answers every prompt of a prompt sheet greedily; the reward run (a finished
``--method reward`` run) scores each ``(prompt, reply)``; the result is the mean reward, stored
and shown in the Benchmark pane like the other scores. The reward model is resolved and checked
at once (a typo or a run that is not a reward model fails before any model loads) and loaded only
when a reply must be scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tui_ft.engine.data import PromptItem
from tui_ft.engine.evaluation import store
from tui_ft.engine.models import ModelError
from tui_ft.engine.runs.record import RunRecord
from tui_ft.engine.workspace import find_run_dir

SCORE_BATCH = 8  # (prompt, reply) pairs per reward-model forward pass


class RewardJudge:
    """A finished reward run, resolved at once and loaded lazily.

    Args:
        ref: The reward run, by name or folder.
        home: The workspace.

    Raises:
        ModelError: No such run, not a reward model, or no final weights yet (one line).
    """

    def __init__(self, ref: str, home: Path):
        run_dir = find_run_dir(ref, Path(home))
        if run_dir is None:
            raise ModelError(f"{ref}: no run of that name (a reward model is a run trained with --method reward)")
        self.run_dir = run_dir.resolve()
        record = RunRecord.read(self.run_dir)
        if record.config.method != "reward":  # the CLI and the dashboard clean the text they show
            raise ModelError(f"{ref}: not a reward model (its method is {record.config.method}); "
                             "train one with --method reward")
        from tui_ft.engine.models.model_folder import has_final_weights

        if not has_final_weights(self.run_dir):
            raise ModelError(f"{ref}: no final weights yet: wait for it to finish")
        # Its weights: a LoRA adapter (its head included), or every weight with reward_mode=full.
        self.weights = self.run_dir / "model" if (self.run_dir / "model").is_dir() else self.run_dir / "adapter"
        self.name = self.run_dir.name
        self._loaded = None

    @property
    def identity(self) -> str:
        """What results call this reward model: its run folder, as a model's results call a run."""
        return f"run:{self.run_dir}"

    def weights_stamp(self) -> list:
        """Size and time of its weights: a reward model trained again scores again."""
        return store.weights_stamp(self.weights)

    def load(self, trust_remote_code: bool = False) -> None:
        """Load the weights now (seconds) unless loaded; :meth:`score` loads them on its first call otherwise.

        ``trust_remote_code`` runs the base model's own code: the user's choice, never run.json's.

        Raises:
            ModelError: The weights or the base model cannot be loaded (one line).
        """
        if self._loaded is not None:
            return
        from tui_ft.engine.models.devices import inference_device
        from tui_ft.engine.training.reward import load_reward_model

        device = inference_device()
        self._loaded = (*load_reward_model(self.run_dir, device=device, trust_remote_code=trust_remote_code), device)

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """The reward of each ``(prompt, reply)``; the model loads on the first call."""
        from tui_ft.engine.training.reward import score_pairs

        self.load()
        model, tokenizer, template, device = self._loaded
        return score_pairs(model, tokenizer, template, list(pairs), device=device, batch_size=SCORE_BATCH)

    def release(self) -> None:
        """Drop the loaded weights."""
        self._loaded = None


@dataclass
class RewardItem:
    """One prompt of the sheet, the model's reply and its reward."""

    prompt: str
    reply: str
    reward: float
    line: int


@dataclass
class RewardResult:
    """The mean reward of a model's replies to a prompt sheet."""

    reward: float
    n: int
    items: list[RewardItem]

    def to_dict(self) -> dict:
        """The stored values (beside the result's identity)."""
        return {"reward": self.reward, "n": self.n,
                "items": [{"prompt": i.prompt, "reply": i.reply, "reward": i.reward, "line": i.line} for i in self.items]}


def run_reward_eval(model, tokenizer, prompts: Sequence[PromptItem], template: str, judge: RewardJudge, settings,
                    progress: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> RewardResult:
    """Answer each prompt with ``settings`` (greedy by default), then score every reply with ``judge``.

    Progress counts replies (the generating is where the time goes); scoring follows in batches.

    Raises:
        EvaluationStopped: ``should_stop`` returned true.
    """
    from tui_ft.engine.data import BenchmarkItem
    from tui_ft.engine.evaluation.scoring import EvaluationStopped, run_benchmark

    replies = []
    for item in prompts:  # one at a time, so a stop request is seen between replies
        if should_stop and should_stop():
            raise EvaluationStopped()
        # The benchmark path renders and answers a prompt exactly as a benchmark's replies are made.
        answered = run_benchmark(model, tokenizer, [BenchmarkItem(item.prompt, "", [], item.line)], template, settings)
        replies.append(answered.items[0].reply)
        if progress:
            progress(len(replies), len(prompts))
    if should_stop and should_stop():
        raise EvaluationStopped()
    rewards = judge.score([(item.prompt, reply) for item, reply in zip(prompts, replies, strict=True)])
    items = [RewardItem(item.prompt, reply, reward, item.line)
             for item, reply, reward in zip(prompts, replies, rewards, strict=True)]
    return RewardResult(sum(rewards) / len(rewards) if rewards else 0.0, len(items), items)
