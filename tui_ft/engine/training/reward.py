"""A reward model: the chapter's RLHF step 2, trained on the same preference pairs as DPO.

The base causal LM gets a scalar head on its last token (transformers'
``AutoModelForSequenceClassification`` with ``num_labels=1``: the head is ``score``, the
sequence's reward is read at its rightmost non-padding token), LoRA on the body and the head
trained in full. Each pair is scored twice and the Bradley–Terry loss pushes the chosen reply's
reward above the rejected one's:

    loss = -log σ(r(prompt, chosen) − r(prompt, rejected))

Steps log ``loss``, ``accuracy`` (the share of pairs whose chosen reply scored higher) and
``margin`` (the mean of r(chosen) − r(rejected)). The model is saved as a PEFT adapter of a
sequence-classification model (the head in ``modules_to_save``), which transformers and peft
load on their own; ``export --merged`` writes a plain sequence-classification folder. With
``reward_mode=full`` every weight trains and the run's ``model/`` is that folder already.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from tui_ft.engine.data import PreferencePair, preference_examples
from tui_ft.engine.data.templates import tokenize_example
from tui_ft.engine.training.batching import collate_tokenized, to_device
from tui_ft.engine.training.objective import PairBatches, StepOutput

HEAD = "score"  # transformers' name for the sequence-classification head of decoder models


def bradley_terry_loss(chosen, rejected):
    """Per-pair ``-log σ(r_chosen − r_rejected)``."""
    return -F.logsigmoid(chosen - rejected)


def rewards(model, input_ids, attention_mask):
    """One scalar reward per row (fp32), as ``AutoModelForSequenceClassification`` computes it."""
    return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0].float()


class RewardObjective(PairBatches):
    """The reward model's objective over preference pairs (an :class:`~tui_ft.engine.training.objective.Objective`).

    A step's loss is the mean over every pair in the step (all micro-batches together).
    """

    name = "reward"
    group_by_length = True  # pairs of similar length share a batch: less padding

    def __init__(self, pairs: list[PreferencePair], tokenizer, template: str, max_length: int):
        self.items, self.dropped, self.truncated = [], 0, 0
        for pair in pairs:
            chosen, rejected = (tokenize_example(e, tokenizer, template, max_length) for e in preference_examples(pair))
            if chosen.input_ids == rejected.input_ids:
                self.dropped += 1  # max_length cut away where the replies differ: nothing to learn
                continue
            self.truncated += chosen.truncated or rejected.truncated
            self.items.append((chosen, rejected))
        self.pad_id = tokenizer.pad_token_id

    def prepare(self, model, run_dir: Path, device, autocast, eval_data=None, group=None) -> None:
        """Nothing to compute before training (DPO's reference pass has no counterpart here)."""

    def collate(self, indices: list[int], device) -> dict:
        """Chosen rows first, then rejected rows, padded together on the right."""
        rows = [self.items[i][0] for i in indices] + [self.items[i][1] for i in indices]
        return to_device(collate_tokenized(rows, self.pad_id), device)

    def forward(self, model, batch: dict) -> StepOutput:
        """Summed Bradley–Terry loss of one micro-batch; the sums stay tensors until the step reads them once."""
        chosen, rejected = rewards(model, batch["input_ids"], batch["attention_mask"]).chunk(2)
        losses = bradley_terry_loss(chosen, rejected)
        tokens = batch.get("tokens")
        if tokens is None:  # a batch built by hand
            tokens = int(batch["attention_mask"].sum())
        margins = (chosen - rejected).detach()
        return StepOutput(losses.sum(), {
            "loss_sum": losses.detach().sum(), "pairs": len(losses), "tokens": tokens,
            "padding": batch["attention_mask"].numel() - tokens, "margin": margins.sum(),
            "correct": (margins > 0).float().sum(), "chosen": chosen.detach().sum(),
            "rejected": rejected.detach().sum(),
        })

    def summarize(self, stats: list[dict]) -> dict:
        """Step metrics: mean loss per pair, accuracy, mean margin and the mean rewards."""
        pairs = max(1, sum(s["pairs"] for s in stats))
        return {"loss": float(sum(s["loss_sum"] for s in stats)) / pairs,
                "accuracy": float(sum(s["correct"] for s in stats)) / pairs,
                "margin": float(sum(s["margin"] for s in stats)) / pairs,
                "reward_chosen": float(sum(s["chosen"] for s in stats)) / pairs,
                "reward_rejected": float(sum(s["rejected"] for s in stats)) / pairs}


@torch.no_grad()
def score_replies(model, tokenizer, template: str, prompt: str, replies: list[str], max_length: int = 2048,
                  device: str = "cpu") -> list[float]:
    """The reward of each reply to ``prompt``, rendered as training rendered the pairs."""
    return score_pairs(model, tokenizer, template, [(prompt, reply) for reply in replies], max_length, device)


@torch.no_grad()
def score_pairs(model, tokenizer, template: str, pairs: list[tuple[str, str]], max_length: int = 2048,
                device: str = "cpu", batch_size: int = 8) -> list[float]:
    """The reward of each ``(prompt, reply)``, ``batch_size`` at a time, rendered as training rendered the pairs."""
    scores = []
    for start in range(0, len(pairs), batch_size):
        rows = [tokenize_example(preference_examples(PreferencePair(prompt, reply, reply))[0], tokenizer, template,
                                 max_length) for prompt, reply in pairs[start:start + batch_size]]
        batch = to_device(collate_tokenized(rows, tokenizer.pad_token_id), device)
        scores += rewards(model, batch["input_ids"], batch["attention_mask"]).tolist()
    return scores


def load_reward_model(run_dir: Path, device: str = "cpu", trust_remote_code: bool = False):
    """A finished reward run's model, tokenizer and template, ready to score (eval mode, fp32).

    Loaded the way any tool would load it: the base as ``AutoModelForSequenceClassification``
    and the run's adapter (its head included) with peft; a full reward model's ``model/`` folder
    as ``AutoModelForSequenceClassification`` alone.

    Raises:
        ModelError: Not a reward run, no final weights yet, or a base model with its own code.
    """
    from peft import PeftModel

    from tui_ft.engine.models import ModelError, check_adapter, load_tokenizer
    from tui_ft.engine.runs.record import RunRecord
    from tui_ft.engine.training.methods import load_reward_base

    record = RunRecord.read(run_dir)
    if record.config.method != "reward":
        raise ModelError(f"{Path(run_dir).name}: not a reward model (its method is {record.config.method}); "
                         "train one with --method reward")
    from tui_ft.engine.models.model_folder import has_final_weights, is_model_folder

    if not has_final_weights(Path(run_dir)):
        raise ModelError(f"{Path(run_dir).name}: no final weights yet: wait for it to finish")
    full = Path(run_dir) / "model"
    if is_model_folder(full):
        from transformers import AutoModelForSequenceClassification

        from tui_ft.engine.models import model_code_problem

        problem = None if trust_remote_code else model_code_problem(full)
        if problem:
            raise ModelError(problem)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(full), dtype=torch.float32, local_files_only=True, trust_remote_code=trust_remote_code,
            use_safetensors=True).to(device).eval()
        return model, load_tokenizer(full), record.template or "chat"
    if record.model_path is None or not is_model_folder(Path(record.model_path)):  # moved or deleted since
        raise ModelError(f"{Path(run_dir).name}: its base model {record.model_path} is not a model folder any more "
                         "(moved or deleted): the adapter needs it")
    model = load_reward_base(record, trust_remote_code, torch.float32, device)
    model = PeftModel.from_pretrained(model, check_adapter(Path(run_dir) / "adapter")).to(device).eval()
    return model, load_tokenizer(record.model_path), record.template or "chat"
