"""How a dataset divides into training and held-out examples, and into steps: no torch here.

The trainer splits with these, and the Train form counts with the same functions before
launch, so the summary it shows is the run that starts.
"""

from __future__ import annotations

import math
import random

EVAL_CAP = 200  # a split-off evaluation set never exceeds this many examples


def split_eval(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(count)`` into ``(train, eval)`` indices, reproducibly for ``seed``.

    Nothing is held out when ``fraction`` is 0 or there are fewer than 10 examples: a tiny
    dataset needs every example for training.
    """
    indices = list(range(count))
    if fraction <= 0 or count < 10:
        return indices, []
    held = min(EVAL_CAP, max(1, round(count * fraction)))
    random.Random(f"eval-split-{seed}").shuffle(indices)
    return sorted(indices[held:]), sorted(indices[:held])


def steps_per_epoch(examples: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps in one epoch (its last step may have fewer micro-batches)."""
    return math.ceil(math.ceil(examples / batch_size) / grad_accum)
