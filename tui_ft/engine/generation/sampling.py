"""Generation settings and the choice of the next token (greedy or sampled).

The logits transforms are transformers' own processors (repetition penalty, temperature,
top-k, top-p), so sampled output follows the same rules as ``model.generate()``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerationSettings:
    """How to generate a reply.

    Attributes:
        max_new_tokens: The most tokens to generate (at least 1).
        temperature: 0 means greedy (always the most likely token); higher is more random.
        top_p: Nucleus sampling: keep the smallest set of tokens whose probability reaches
            ``top_p`` (0 < top_p <= 1; 1 keeps all).
        top_k: Keep only the ``top_k`` most likely tokens (0 keeps all).
        repetition_penalty: Above 1 discourages tokens already in the prompt or reply
            (1 disables it).
        seed: Seed of the sampler's random generator, for reproducible sampling (None: random).
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def problems(self) -> list[str]:
        """One line per invalid value (empty when the settings are valid)."""
        found = []
        if self.max_new_tokens < 1:
            found.append(f"max new tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            found.append(f"temperature must be 0 or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            found.append(f"top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            found.append(f"top-k must be 0 or more, got {self.top_k}")
        if self.repetition_penalty <= 0:
            found.append(f"repetition penalty must be above 0, got {self.repetition_penalty}")
        return found

    def check(self) -> None:
        """Raise ``ValueError`` with the first problem, if any."""
        problems = self.problems()
        if problems:
            raise ValueError(problems[0])

    @property
    def greedy(self) -> bool:
        """True when the next token is always the most likely one."""
        return self.temperature == 0


class TokenSampler:
    """Picks the next token from the last position's logits, following the settings."""

    def __init__(self, settings: GenerationSettings, device="cpu"):
        import torch
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        settings.check()
        self.settings = settings
        processors = LogitsProcessorList()
        if settings.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
        if not settings.greedy:
            # The same order as generate(): penalty, temperature, top-k, top-p.
            if settings.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(settings.temperature))
            if settings.top_k > 0:
                processors.append(TopKLogitsWarper(settings.top_k))
            if settings.top_p < 1.0:
                processors.append(TopPLogitsWarper(settings.top_p))
        self.processors = processors
        self.generator = None
        if not settings.greedy:
            self.generator = torch.Generator(device=device)
            if settings.seed is not None:
                self.generator.manual_seed(settings.seed)
            else:
                self.generator.seed()

    def next_token(self, seen_ids, logits):
        """Return the next token id as a ``(1, 1)`` tensor.

        Args:
            seen_ids: ``(1, n)`` tensor of the prompt and reply tokens so far (only the
                repetition penalty reads it).
            logits: ``(1, vocab)`` logits of the last position.
        """
        import torch

        if self.processors:
            logits = self.processors(seen_ids, logits.float())
        if self.generator is None:
            return logits.argmax(dim=-1, keepdim=True)
        probs = torch.softmax(logits.float(), dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator)
