"""Supervised fine-tuning: the cross-entropy objective on the trained tokens (an :class:`~.objective.Objective`)."""

from __future__ import annotations

import math

import torch.nn.functional as F

from tui_ft.engine.data.templates import IGNORE_INDEX, tokenize_example
from tui_ft.engine.training.batching import collate_tokenized, sorted_batches, to_device, trained_token_count
from tui_ft.engine.training.objective import StepOutput, selected_logits


class SFTObjective:
    """Supervised fine-tuning: cross-entropy on the trained tokens, weighted by token.

    A step's loss is the sum of token NLL over all its micro-batches divided by the number of
    trained tokens in the whole step, so gradient accumulation gives the same gradient as one
    big batch (never a mean of micro-batch means).
    """

    name = "sft"

    def __init__(self, examples: list, tokenizer, template: str, max_length: int, train_on_prompt: bool):
        tokenized = [tokenize_example(e, tokenizer, template, max_length, train_on_prompt) for e in examples]
        self.items = [t for t in tokenized if trained_token_count(t) > 0]
        self.dropped = len(tokenized) - len(self.items)  # every trained token was cut by max_length
        self.truncated = sum(1 for t in self.items if t.truncated)
        self.pad_id = tokenizer.pad_token_id
        self.packing = False  # set by prepare() for a model that packs (tui_ft.engine.training.packing)

    @property
    def group_by_length(self) -> bool:
        """Whether training batches should hold examples of similar length (no need when packing)."""
        return not self.packing

    def lengths(self) -> list[int]:
        return [len(item.input_ids) for item in self.items]

    def prepare(self, model, run_dir, device, autocast, eval_data=None, group=None) -> None:
        """Pack training batches when the model allows (DPO caches reference log-probabilities here).

        Evaluation batches stay padded: sorted by length, they hold little padding.
        """
        from tui_ft.engine.training.packing import supports_packing

        self.packing = supports_packing(model, str(device))

    def eval_batches(self, batch_size: int) -> list[list[int]]:
        """Every item once, sorted by length (least padding); evaluation needs no shuffle."""
        return sorted_batches(self.lengths(), batch_size)

    def weight(self, indices: list[int]) -> int:
        """What a step's loss is normalised by: trained tokens."""
        return sum(trained_token_count(self.items[i]) for i in indices)

    def collate(self, indices: list[int], device) -> dict:
        if self.packing:
            from tui_ft.engine.training.packing import collate_packed

            batch = collate_packed([self.items[i] for i in indices], self.pad_id)
        else:
            batch = collate_tokenized([self.items[i] for i in indices], self.pad_id)
        return to_device(batch, device)

    def forward(self, model, batch: dict) -> StepOutput:
        """Summed NLL over the trained tokens of one micro-batch.

        The NLL stays a tensor in the statistics (read once per step, after every micro-batch:
        :func:`~tui_ft.engine.training.distributed.reduce_stats`); the counts come from the host
        (:func:`~tui_ft.engine.training.batching.collate_tokenized`), or from the tensors for a
        batch built some other way.
        """
        labels = batch["labels"][:, 1:]
        index = batch.get("trained_index")
        mask = labels != IGNORE_INDEX if index is None else None
        if "position_ids" in batch:  # packed: no attention mask, positions restart per example
            logits = selected_logits(model, batch["input_ids"], None, mask, batch["position_ids"], index)
        else:
            logits = selected_logits(model, batch["input_ids"], batch["attention_mask"], mask, index=index)
        tokens, positions = batch.get("tokens"), batch.get("positions")
        if tokens is None:
            tokens, positions = int(batch["attention_mask"].sum()), batch["attention_mask"].numel()
        targets = labels[mask] if index is None else batch["trained_labels"]
        trained = int(mask.sum()) if index is None else batch["trained"]
        nll = F.cross_entropy(logits.float(), targets, reduction="sum")
        return StepOutput(nll, {"nll": nll.detach(), "trained": trained, "tokens": tokens, "padding": positions - tokens})

    def summarize(self, stats: list[dict]) -> dict:
        """Step metrics from micro-batch statistics: token-weighted loss and its perplexity."""
        trained = sum(s["trained"] for s in stats)
        loss = float(sum(s["nll"] for s in stats)) / max(1, trained)
        return {"loss": loss, "ppl": safe_exp(loss), "trained_tokens": trained}


def safe_exp(value: float) -> float:
    """``exp`` that saturates to infinity instead of raising (for perplexity of huge losses)."""
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf
