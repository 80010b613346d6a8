"""Direct Preference Optimization: learn from prompt/chosen/rejected pairs without a reward model.

The loss (Rafailov et al., 2023) for one pair, with ``π`` the policy, ``π_ref`` the reference
and sequence log-probabilities summed over the reply tokens (and EOS):

    loss = -log σ(β · [(log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected))])

The reference is the model before training: the policy with its LoRA adapter switched off, or
(full fine-tuning) the initial weights. Its log-probabilities never change, so they are
computed once per pair before the first step and cached in the run folder
(``reference_logps.safetensors``); no frozen copy of the model is kept in memory.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F

from tui_ft.engine.data import PreferencePair, preference_examples
from tui_ft.engine.data.templates import IGNORE_INDEX, tokenize_example
from tui_ft.engine.training.batching import collate_tokenized, to_device, trained_token_count
from tui_ft.engine.training.objective import PairBatches, StepOutput, selected_logits

REFERENCE_FILE = "reference_logps.safetensors"


def sequence_logps(model, input_ids, attention_mask, labels, trained: dict | None = None):
    """Sum of the log-probabilities of each row's labelled tokens (a tensor of one value per row).

    Args:
        trained: The batch's ``trained_index``, ``trained_rows`` and ``trained_labels``, computed
            on the host (:func:`~tui_ft.engine.training.batching.add_trained_positions`): without
            them the positions come from a mask on the device, and its count is read back.
    """
    if trained is None or "trained_index" not in trained:
        mask = labels[:, 1:] != IGNORE_INDEX
        index, rows, targets = None, mask.nonzero()[:, 0], labels[:, 1:][mask]
    else:
        mask, index, rows, targets = None, trained["trained_index"], trained["trained_rows"], trained["trained_labels"]
    logits = selected_logits(model, input_ids, attention_mask, mask, index=index).float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.zeros(input_ids.shape[0], dtype=token_logps.dtype, device=token_logps.device).index_add(0, rows, token_logps)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """Per-pair DPO losses and the implicit rewards ``β · (log π − log π_ref)`` of each reply.

    Returns:
        ``(losses, chosen_rewards, rejected_rewards)``, one value per pair each; the rewards are
        detached (they are metrics).
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


class DPOObjective(PairBatches):
    """The DPO objective over preference pairs (an :class:`~tui_ft.engine.training.objective.Objective`).

    A step's loss is the mean over every pair in the step (all micro-batches together).
    """

    name = "dpo"
    group_by_length = True  # pairs of similar length share a batch: less padding

    def __init__(self, pairs: list[PreferencePair], tokenizer, template: str, max_length: int, beta: float):
        self.items, self.dropped, self.truncated = [], 0, 0
        for pair in pairs:
            chosen, rejected = (tokenize_example(e, tokenizer, template, max_length) for e in preference_examples(pair))
            if trained_token_count(chosen) == 0 or trained_token_count(rejected) == 0:
                self.dropped += 1  # a reply cut away entirely by max_length teaches nothing
                continue
            self.truncated += chosen.truncated or rejected.truncated
            self.items.append((chosen, rejected))
        self.beta = beta
        self.pad_id = tokenizer.pad_token_id
        self.reference = None  # (pairs, 2) tensor: reference log-prob of chosen, rejected

    def collate(self, indices: list[int], device) -> dict:
        """Chosen rows first, then rejected rows, padded together; plus the cached reference values."""
        rows = [self.items[i][0] for i in indices] + [self.items[i][1] for i in indices]
        batch = collate_tokenized(rows, self.pad_id)
        if self.reference is not None:
            batch["reference"] = self.reference[indices]
        return to_device(batch, device)

    def forward(self, model, batch: dict) -> StepOutput:
        """Summed DPO loss of one micro-batch; the sums stay tensors until the step reads them once."""
        logps = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"], batch)
        chosen, rejected = logps.chunk(2)
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            chosen, rejected, batch["reference"][:, 0], batch["reference"][:, 1], self.beta
        )
        tokens = batch.get("tokens")
        if tokens is None:  # a batch built by hand
            tokens = int(batch["attention_mask"].sum())
        return StepOutput(losses.sum(), {
            "loss_sum": losses.detach().sum(), "pairs": len(losses), "tokens": tokens,
            "padding": batch["attention_mask"].numel() - tokens,
            "chosen": chosen_rewards.sum(), "rejected": rejected_rewards.sum(),
            "correct": (chosen_rewards > rejected_rewards).float().sum(),
        })

    def summarize(self, stats: list[dict]) -> dict:
        """Step metrics: mean loss per pair, mean rewards, their margin and the reward accuracy."""
        pairs = max(1, sum(s["pairs"] for s in stats))
        chosen = float(sum(s["chosen"] for s in stats)) / pairs
        rejected = float(sum(s["rejected"] for s in stats)) / pairs
        return {"loss": float(sum(s["loss_sum"] for s in stats)) / pairs, "rewards_chosen": chosen,
                "rewards_rejected": rejected, "rewards_margin": chosen - rejected,
                "rewards_accuracy": float(sum(s["correct"] for s in stats)) / pairs}

    def prepare(self, model, run_dir: Path, device, autocast, eval_data=None, group=None) -> None:
        """Load or compute the reference log-probabilities of every pair (training and held out).

        Called before a checkpoint is loaded, so the model still holds its initial weights.
        With several processes (``group``) every process calls it: rank 0 decides whether its
        cache is valid (on several servers only its run folder has one) and sends it to all;
        else each process computes its share of the batches and all of them gather every
        share, since a rank's slice of a global batch may hold any pair. Rank 0 writes the cache.
        """
        from safetensors.torch import load_file, save

        from tui_ft.engine.files import write_bytes_atomic
        from tui_ft.engine.runs import list_checkpoints
        from tui_ft.engine.training.distributed import Group, broadcast_object

        group = group or Group()
        path = Path(run_dir) / REFERENCE_FILE
        sets = {"train": self} | ({"eval": eval_data} if eval_data is not None else {})
        cached, lost = None, False
        if group.is_main:
            if path.is_file():
                found = load_file(path)
                if all(name in found and len(found[name]) == len(data.items) for name, data in sets.items()):
                    cached = {name: found[name] for name in sets}
            # Full DPO past step 0: the initial weights are gone, and so is the reference.
            lost = cached is None and bool(list_checkpoints(run_dir)) and not hasattr(model, "disable_adapter")
        cached, lost = broadcast_object((cached, lost), group)
        if lost:
            raise RuntimeError(f"{REFERENCE_FILE} is missing; full DPO cannot rebuild its reference after training started")
        if cached is not None:
            for name, data in sets.items():
                data.reference = cached[name]
            return
        for data in sets.values():
            data.reference = reference_logps(model, data, device, autocast, group)
        if group.is_main:
            # Through a temporary file created exclusively: a link planted in the run folder is never written through.
            write_bytes_atomic(path, save({name: data.reference.contiguous() for name, data in sets.items()}))


def reference_logps(model, data: DPOObjective, device, autocast, group=None):
    """The reference model's log-probabilities of every pair, as a ``(pairs, 2)`` CPU tensor.

    With several processes (``group``) each computes every ``world``-th batch and the shares
    are gathered: the batches are the ones one process would run, so the values are too.
    """
    from tui_ft.engine.training.distributed import Group, all_gather_objects

    group = group or Group()
    values = torch.zeros(len(data.items), 2, dtype=torch.float32)
    batches = data.eval_batches(8)[group.rank :: group.world]
    adapter_off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    with torch.no_grad(), adapter_off:
        for indices in batches:
            batch = data.collate(indices, device)
            with autocast():
                logps = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"], batch).float()
            chosen, rejected = logps.cpu().chunk(2)
            values[indices, 0], values[indices, 1] = chosen, rejected
    model.train(was_training)
    if group.active:
        mine = sorted(i for indices in batches for i in indices)
        print(f"rank {group.rank}: reference log-probabilities of {len(mine)} of {len(data.items)} pairs", flush=True)
        for indices, share in all_gather_objects((mine, values[mine]), group):
            values[indices] = share
    return values
