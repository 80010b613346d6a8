"""A run that has diverged while every number stays finite: tell it apart from one that trains.

Two symptoms, each for ``PATIENCE`` steps in a row (one odd batch is not a collapse):

- **A uniform guess.** The loss sits at ln(vocabulary size) (10.80 for a 49,152-token
  vocabulary) with a zero gradient norm: the weights blew up, the logits saturated, and
  nothing flows back any more. Seen with ``--lr 1e9``: 18 steps at 10.8027, then
  ``finished``. Only for objectives whose loss is a token cross-entropy (SFT).
- **A blow-up.** The loss at many times its running median, and well above it in absolute
  terms (a small loss can double by noise).
"""

from __future__ import annotations

import math
import statistics
from collections import deque

PATIENCE = 3  # consecutive steps showing a symptom
UNIFORM_TOLERANCE = 0.02  # relative distance from ln(vocabulary size)
ZERO_GRAD_NORM = 1e-6
SPIKE_FACTOR = 4.0  # the loss over its running median
SPIKE_MARGIN = 1.0  # ... and this much above it
WINDOW = 20  # steps in the running median
MIN_HISTORY = 5  # steps before the median is trusted


class CollapseWatch:
    """Feed it each step's loss and gradient norm; it says when the run has collapsed.

    Args:
        vocab_size: The model's vocabulary size, or None when the loss is not a token
            cross-entropy (DPO): then only blow-ups are watched.
    """

    def __init__(self, vocab_size: int | None):
        self.uniform_loss = math.log(vocab_size) if vocab_size and vocab_size > 1 else None
        self.history: deque[float] = deque(maxlen=WINDOW)
        self.uniform_steps = self.spike_steps = 0

    def check(self, loss: float, grad_norm: float) -> str | None:
        """The symptom in words once it has lasted ``PATIENCE`` steps, else None."""
        uniform = (self.uniform_loss is not None and grad_norm < ZERO_GRAD_NORM
                   and abs(loss - self.uniform_loss) <= UNIFORM_TOLERANCE * self.uniform_loss)
        self.uniform_steps = self.uniform_steps + 1 if uniform else 0
        median = statistics.median(self.history) if len(self.history) >= MIN_HISTORY else None
        spike = median is not None and loss > SPIKE_FACTOR * median and loss > median + SPIKE_MARGIN
        self.spike_steps = self.spike_steps + 1 if spike else 0
        if not spike:
            self.history.append(loss)  # a spike does not move the median it is judged against
        if self.uniform_steps >= PATIENCE:
            return (f"the loss has sat at ln(vocabulary size) = {self.uniform_loss:.4f} with a zero gradient for "
                    f"{self.uniform_steps} steps: the model now guesses uniformly")
        if self.spike_steps >= PATIENCE:
            return (f"the loss has been over {SPIKE_FACTOR:g}× its running median ({median:.4f}) for "
                    f"{self.spike_steps} steps (now {loss:.4f})")
        return None
