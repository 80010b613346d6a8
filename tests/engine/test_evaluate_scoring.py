"""Scorers, perplexity and choice scoring, checked against direct computations on a tiny model."""

from __future__ import annotations

import math

import pytest

from tui_ft.engine.data import BenchmarkItem, Example, load_dataset, sft_examples
from tui_ft.engine.data.templates import IGNORE_INDEX, encode_text, render_prompt, tokenize_example
from tui_ft.engine.evaluation.scoring import (
    choice_sequence,
    perplexity,
    run_benchmark,
    score_choices,
    score_contains,
    score_exact,
)


@pytest.mark.parametrize(
    ("reply", "expected", "result"),
    [
        ("The capital of France is Paris.", "paris", True),
        ("PARIS", "Paris", True),
        ("It is Lyon.", "Paris", False),
        ("2 + 2 = 4", " 4 ", True),  # the expected answer's own whitespace does not count
        ("", "4", False),
    ],
)
def test_score_contains(reply, expected, result):
    assert score_contains(reply, expected) is result


@pytest.mark.parametrize(
    ("reply", "expected", "result"),
    [
        ("Paris", "Paris", True),
        ("  Paris.\n", "Paris", True),  # whitespace and one final period are stripped
        ("paris", "PARIS.", True),  # case is ignored
        ("Paris!", "Paris", False),
        ("Paris..", "Paris", False),  # only one final period
        ("The capital is Paris.", "Paris", False),
        ("New  York", "New York", False),  # inner whitespace counts
    ],
)
def test_score_exact(reply, expected, result):
    assert score_exact(reply, expected) is result


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from tui_ft.engine.models import ModelRef, load_model

    return load_model(ModelRef("tiny", tiny_model_dir, "folder"))


def _direct_perplexity(model, tokenizer, examples, template):
    """One example at a time, no padding: sum the NLL of every labelled token, then exp(sum/count)."""
    import torch

    total, count = 0.0, 0
    for example in examples:
        tokenized = tokenize_example(example, tokenizer, template)
        with torch.no_grad():
            logits = model(torch.tensor([tokenized.input_ids])).logits[0]
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        for position in range(1, len(tokenized.labels)):
            label = tokenized.labels[position]
            if label != IGNORE_INDEX:
                total -= logprobs[position - 1, label].item()
                count += 1
    return math.exp(total / count), total, count


@pytest.mark.parametrize("template", ["chat", "alpaca"])
def test_perplexity_equals_direct_computation(tiny, workspace, template):
    model, tokenizer = tiny
    examples = sft_examples(load_dataset(workspace / "datasets" / "seed_instructions_20.jsonl"))[:7]
    lengths = {len(tokenize_example(e, tokenizer, template).input_ids) for e in examples}
    assert len(lengths) > 3  # batches really mix lengths, so padding is exercised
    expected_ppl, expected_nll, expected_tokens = _direct_perplexity(model, tokenizer, examples, template)
    result = perplexity(model, tokenizer, examples, template, batch_size=3)
    assert result.tokens == expected_tokens
    assert result.nll == pytest.approx(expected_nll, rel=1e-5)
    assert result.perplexity == pytest.approx(expected_ppl, rel=1e-5)
    # Token-weighted, not a mean of per-example perplexities (which differs when lengths differ).
    singles = [perplexity(model, tokenizer, [e], template).perplexity for e in examples[:3]]
    assert perplexity(model, tokenizer, examples[:3], template).perplexity != pytest.approx(sum(singles) / 3, rel=1e-3)


def test_perplexity_with_truncation_counts_only_kept_tokens(tiny):
    model, tokenizer = tiny
    example = Example([{"role": "user", "content": "Say many words."}, {"role": "assistant", "content": "one two three four five six"}])
    full = perplexity(model, tokenizer, [example], "alpaca")
    prompt_tokens = len(encode_text(tokenizer, render_prompt(example.messages[:1], tokenizer, "alpaca")))
    cut = perplexity(model, tokenizer, [example], "alpaca", max_length=prompt_tokens + 2)
    assert cut.tokens == 2 < full.tokens
    with pytest.raises(ValueError, match="no response tokens"):
        perplexity(model, tokenizer, [example], "alpaca", max_length=prompt_tokens)


def _direct_choice_logprob(model, tokenizer, prompt_text, choice):
    import torch

    prompt_ids = encode_text(tokenizer, prompt_text)
    full_ids = encode_text(tokenizer, prompt_text + choice)
    assert full_ids[: len(prompt_ids)] == prompt_ids
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([full_ids])).logits[0].double(), dim=-1)
    return sum(logprobs[t - 1, full_ids[t]].item() for t in range(len(prompt_ids), len(full_ids)))


def test_choice_scoring_picks_the_likeliest_choice(tiny):
    model, tokenizer = tiny
    items = [
        # Under a random model each token costs about ln(vocab) nats: one short word beats ten.
        BenchmarkItem("Pick one.", "yes", ["yes", "no no no no no no no no no no"], line=1),
        BenchmarkItem("Pick again.", "maybe maybe maybe maybe maybe maybe", ["maybe", "maybe maybe maybe maybe maybe maybe", "x"], line=2),
        BenchmarkItem("Colour?", "blue", ["red", "blue", "green", "yellow"], line=3),
    ]
    result = score_choices(model, tokenizer, items, "chat", batch_size=2)
    assert [r.reply for r in result.items][:1] == ["yes"]
    assert result.items[0].correct and not result.items[1].correct
    for item, outcome in zip(items, result.items, strict=False):
        prompt_text = render_prompt([{"role": "user", "content": item.prompt}], tokenizer, "chat")
        direct = [_direct_choice_logprob(model, tokenizer, prompt_text, c) for c in item.choices]
        assert outcome.details["loglikelihoods"] == pytest.approx(direct, rel=1e-5, abs=1e-4)
        best = item.choices[max(range(len(direct)), key=direct.__getitem__)]
        assert outcome.reply == best and outcome.correct == (best == item.expected)
    assert result.score == pytest.approx(sum(r.correct for r in result.items) / 3)
    assert result.score_norm is not None
    # run_benchmark dispatches to the same scoring
    assert run_benchmark(model, tokenizer, items, "chat", scorer="choice").score == result.score


def test_choice_sequence_labels_only_the_choice(tokenizer):
    prompt = render_prompt([{"role": "user", "content": "Q?"}], tokenizer, "chat")
    ids, labels = choice_sequence(tokenizer, prompt, "Paris")
    scored = [label for label in labels if label != IGNORE_INDEX]
    assert tokenizer.decode(scored) == "Paris"
    assert ids[: len(ids) - len(scored)] == encode_text(tokenizer, prompt)


def test_run_benchmark_generates_and_scores_each_item(tiny):
    from tui_ft.engine.generation import GenerationSettings

    model, tokenizer = tiny
    items = [BenchmarkItem("What is 2 + 2?", "4", line=1), BenchmarkItem("Say hi.", "", line=2)]
    seen = []
    result = run_benchmark(model, tokenizer, items, "alpaca", GenerationSettings(max_new_tokens=4),
                           progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]
    assert result.n == 2 and result.items[1].correct  # "" is contained in every reply
    assert result.items[0].correct == ("4" in result.items[0].reply)
    assert result.score == sum(i.correct for i in result.items) / 2
