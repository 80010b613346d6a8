"""What the trainer asks of a training objective (SFT, DPO), and the pieces they share.

:class:`Objective` is the interface :class:`~tui_ft.engine.training.trainer.Trainer` calls:
:class:`~tui_ft.engine.training.sft.SFTObjective` and
:class:`~tui_ft.engine.training.dpo.DPOObjective` implement it. A new objective implements it
too and is chosen in :func:`~tui_ft.engine.training.trainer.build_objectives`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from tui_ft.engine.training.batching import sorted_batches

# Architectures whose logits are exactly lm_head(last hidden state): for them the output head
# runs only on the positions that carry loss (models with logit scaling or soft-capping do not).
PLAIN_HEAD_TYPES = {"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2"}


@dataclass
class StepOutput:
    """One micro-batch's contribution: the summed loss (a tensor) and detached statistics."""

    loss_sum: object
    stats: dict


@runtime_checkable
class Objective(Protocol):
    """A training objective over a list of items (examples, preference pairs).

    Attributes:
        name: ``sft`` or ``dpo``, as the metrics name it.
        items: The tokenized items, in dataset order; batches are lists of indices into it.
        dropped: Items left out because ``max_length`` cut away every trained token.
        truncated: Items cut by ``max_length`` that still train.
        group_by_length: Whether training batches should hold items of similar length.
    """

    name: str
    items: list
    dropped: int
    truncated: int

    @property
    def group_by_length(self) -> bool: ...

    def lengths(self) -> list[int]:
        """Each item's length in tokens (what batching groups by)."""

    def prepare(self, model, run_dir: Path, device, autocast, eval_data: Objective | None = None, group=None) -> None:
        """Get ready to train ``model`` (DPO computes its reference log-probabilities here).

        With several processes every one calls it (``group``: this process's
        :class:`~tui_ft.engine.training.distributed.Group`), so it may use collectives.
        """

    def eval_batches(self, batch_size: int) -> list[list[int]]:
        """Every item once, in batches of ``batch_size`` at most."""

    def weight(self, indices: list[int]) -> int:
        """What a step's summed loss is divided by (trained tokens, pairs)."""

    def collate(self, indices: list[int], device) -> dict:
        """The tensors of one micro-batch, on ``device``."""

    def forward(self, model, batch: dict) -> StepOutput:
        """The summed loss of one micro-batch and its statistics."""

    def summarize(self, stats: list[dict]) -> dict:
        """A step's metrics from its micro-batches' statistics."""


class PairBatches:
    """What DPO and the reward model share: items are ``(chosen, rejected)`` tokenized pairs,
    batched by the longer of the two, and a step's loss is a mean over pairs."""

    items: list

    def lengths(self) -> list[int]:
        return [max(len(c.input_ids), len(r.input_ids)) for c, r in self.items]

    def weight(self, indices: list[int]) -> int:
        """What a step's loss is normalised by: pairs."""
        return len(indices)

    def eval_batches(self, batch_size: int) -> list[list[int]]:
        return sorted_batches(self.lengths(), batch_size)


def selected_logits(model, input_ids, attention_mask, mask, position_ids=None, index=None):
    """Next-token logits at the positions where ``mask`` (batch × length-1) is true.

    The output head is a large share of a small model's compute (49k-token vocabulary): for
    plain-head architectures it runs only on the positions that carry loss, so prompt tokens
    cost no head or softmax work. Other models go through their full forward. ``position_ids``
    are given for packed rows (see :mod:`tui_ft.engine.training.packing`). ``index``, the flat
    positions of ``mask`` computed on the host (``trained_index`` of a collated batch), selects
    the same rows without reading a count back from the device.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if position_ids is not None:
        inputs["position_ids"] = position_ids
    if getattr(base.config, "model_type", None) in PLAIN_HEAD_TYPES and hasattr(base, "lm_head"):
        hidden = base.get_decoder()(**inputs).last_hidden_state
        return base.lm_head(_select(hidden[:, :-1], mask, index))
    logits = model(**inputs).logits
    return _select(logits[:, :-1], mask, index)


def _select(values, mask, index):
    """``values[mask]`` (rows of the last dimension), through ``index`` when given."""
    if index is None:
        return values[mask]
    return values.reshape(-1, values.shape[-1]).index_select(0, index)
