"""Dataset statistics with a model's tokenizer: lengths, histogram, truncation count."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from tui_ft.engine.data.formats import Dataset, preference_examples, sft_examples
from tui_ft.engine.data.templates import render, render_prompt


@dataclass
class DatasetStats:
    """Token-length statistics of a dataset under one template and tokenizer."""

    examples: int
    min_tokens: int
    median_tokens: float
    max_tokens: int
    total_tokens: int
    over_max_length: int
    max_length: int
    histogram: list[tuple[int, int, int]] = field(default_factory=list)  # (low, high, count)


def token_lengths(dataset: Dataset, tokenizer, template: str) -> list[int]:
    """The token count of every rendered example (both replies of a preference pair).

    A prompts file has no replies; its lengths are those of the prompts rendered for a reply.
    """
    if dataset.format == "prompts":
        user = [[{"role": "user", "content": item.prompt}] for item in dataset.records]
        texts = [render_prompt(messages, tokenizer, template) for messages in user]
    else:
        if dataset.format == "preference":
            examples = [e for pair in dataset.records for e in preference_examples(pair)]
        else:
            examples = sft_examples(dataset)
        texts = [render(example, tokenizer, template).text for example in examples]
    # One batched call: the fast tokenizer parallelises it and it is far quicker than a loop.
    return [len(ids) for ids in tokenizer(texts)["input_ids"]] if texts else []


def histogram(lengths: list[int], bins: int = 10) -> list[tuple[int, int, int]]:
    """Equal-width bins over ``[min, max]`` as ``(low, high, count)``."""
    if not lengths:
        return []
    low, high = min(lengths), max(lengths)
    width = max(1, -(-(high - low + 1) // bins))
    counts = [0] * bins
    for length in lengths:
        counts[min(bins - 1, (length - low) // width)] += 1
    return [(low + i * width, low + (i + 1) * width - 1, c) for i, c in enumerate(counts) if low + i * width <= high]


def dataset_stats(dataset: Dataset, tokenizer, template: str, max_length: int = 512, bins: int = 10) -> DatasetStats:
    """Compute :class:`DatasetStats` for ``dataset``.

    A preference pair counts once, with the length of its longer reply, so the histogram sums
    to the example count and ``over_max_length`` counts the pairs that would be truncated;
    ``total_tokens`` still counts both replies.
    """
    lengths = token_lengths(dataset, tokenizer, template)
    if not lengths:
        return DatasetStats(0, 0, 0.0, 0, 0, 0, max_length)
    total = sum(lengths)
    if dataset.format == "preference":
        lengths = [max(chosen, rejected) for chosen, rejected in zip(lengths[::2], lengths[1::2], strict=False)]
    return DatasetStats(
        examples=len(lengths),
        min_tokens=min(lengths),
        median_tokens=statistics.median(lengths),
        max_tokens=max(lengths),
        total_tokens=total,
        over_max_length=sum(1 for n in lengths if n > max_length),
        max_length=max_length,
        histogram=histogram(lengths, bins),
    )
