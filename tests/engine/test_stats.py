"""Dataset statistics on hand-made files whose token lengths are known.

Answers ``"a"``, ``"a a"``, ... add one token per extra ``" a"``, so five QA examples have
lengths ``L, L+1, L+2, L+5, L+9`` where ``L`` is the one-word example's length.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui_ft.engine.data import Dataset, Example, load_dataset
from tui_ft.engine.data.stats import DatasetStats, dataset_stats, histogram, token_lengths
from tui_ft.engine.data.templates import encode_text, render, render_prompt, tokenize_example

EXTRA_WORDS = [0, 1, 2, 5, 9]


def answer(extra: int) -> str:
    return "a" + " a" * extra


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def qa_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "qa.jsonl", [{"question": "Say a.", "answer": answer(k)} for k in EXTRA_WORDS])


def base_length(tokenizer, template: str) -> int:
    example = Example([{"role": "user", "content": "Say a."}, {"role": "assistant", "content": "a"}])
    return tokenize_example(example, tokenizer, template).full_length


def test_histogram_bins_by_hand():
    assert histogram([1, 2, 3, 10], bins=3) == [(1, 4, 3), (5, 8, 0), (9, 12, 1)]
    assert histogram([7, 7, 7]) == [(7, 7, 3)]
    assert histogram([]) == []
    lengths = list(range(3, 250, 7))
    bins = histogram(lengths, bins=10)
    assert len(bins) == 10 and sum(count for _, _, count in bins) == len(lengths)
    assert bins[0][0] == 3 and bins[-1][0] <= 248 <= bins[-1][1]
    assert all(low <= high and high + 1 == following for (low, high, _), (following, _, _) in zip(bins, bins[1:], strict=False))


@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_stats_on_a_hand_made_file(tokenizer, qa_file, template):
    base = base_length(tokenizer, template)
    dataset = load_dataset(qa_file)
    assert token_lengths(dataset, tokenizer, template) == [base + k for k in EXTRA_WORDS]
    stats = dataset_stats(dataset, tokenizer, template, max_length=base + 2, bins=3)
    assert stats == DatasetStats(
        examples=5,
        min_tokens=base,
        median_tokens=base + 2,
        max_tokens=base + 9,
        total_tokens=5 * base + 17,
        over_max_length=2,
        max_length=base + 2,
        histogram=[(base, base + 3, 3), (base + 4, base + 7, 1), (base + 8, base + 11, 1)],
    )
    assert sum(count for _, _, count in stats.histogram) == stats.examples


def test_default_bins_and_max_length(tokenizer, tmp_path):
    records = [{"instruction": "Repeat.", "response": answer(k)} for k in range(0, 60, 3)]
    dataset = load_dataset(write_jsonl(tmp_path / "many.jsonl", records))
    stats = dataset_stats(dataset, tokenizer, "alpaca")
    lengths = [len(encode_text(tokenizer, render(e, tokenizer, "alpaca").text)) for e in dataset.records]
    assert (stats.examples, stats.max_length, stats.over_max_length) == (20, 512, 0)
    assert (stats.min_tokens, stats.max_tokens, stats.total_tokens) == (min(lengths), max(lengths), sum(lengths))
    assert stats.max_tokens - stats.min_tokens == 57
    assert len(stats.histogram) == 10 and sum(c for _, _, c in stats.histogram) == 20
    assert dataset_stats(dataset, tokenizer, "alpaca", max_length=1).over_max_length == 20


def test_preference_pairs_count_once_with_their_longer_reply(tokenizer, tmp_path):
    records = [
        {"prompt": "Say a.", "chosen": answer(4), "rejected": answer(0)},
        {"prompt": "Say a.", "chosen": answer(1), "rejected": answer(2)},
    ]
    dataset = load_dataset(write_jsonl(tmp_path / "pref.jsonl", records))
    base = base_length(tokenizer, "alpaca")
    assert token_lengths(dataset, tokenizer, "alpaca") == [base + 4, base, base + 1, base + 2]
    stats = dataset_stats(dataset, tokenizer, "alpaca", max_length=base + 3)
    assert (stats.examples, stats.min_tokens, stats.max_tokens) == (2, base + 2, base + 4)
    assert (stats.over_max_length, stats.total_tokens) == (1, 4 * base + 7)
    assert sum(c for _, _, c in stats.histogram) == 2


def test_prompts_are_measured_as_rendered_for_a_reply(tokenizer, tmp_path):
    prompts = ["Write a poem.", "Explain why the sky is blue in simple terms."]
    dataset = load_dataset(write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in prompts]))
    expected = [len(encode_text(tokenizer, render_prompt([{"role": "user", "content": p}], tokenizer, "chat"))) for p in prompts]
    stats = dataset_stats(dataset, tokenizer, "chat")
    assert (stats.examples, stats.min_tokens, stats.max_tokens) == (2, min(expected), max(expected))
    assert expected[1] > expected[0]


def test_empty_dataset_has_zero_stats(tokenizer, tmp_path):
    stats = dataset_stats(Dataset(tmp_path / "none.jsonl", "qa", []), tokenizer, "chat", max_length=64)
    assert stats == DatasetStats(0, 0, 0.0, 0, 0, 0, 64, [])
