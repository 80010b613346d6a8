"""Scoring a loaded model: perplexity over a dataset, and benchmark items by reply or by choice.

Everything here takes a model and tokenizer already loaded; :mod:`tui_ft.engine.evaluation.evaluate`
loads models, caches results and runs jobs. Definitions follow DESIGN.md:

- perplexity = ``exp(total NLL of the scored tokens / number of scored tokens)`` over the
  whole dataset, where the scored tokens are the response tokens + EOS under the template
  (the training labels of :func:`~tui_ft.engine.data.templates.tokenize_example`);
- ``contains``: the expected answer, lower-cased, is in the lower-cased reply;
- ``exact``: equal after stripping whitespace and a final period, ignoring case;
- ``choice``: the choice with the highest log-likelihood as the reply wins (as
  lm-evaluation-harness scores multiple choice).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from tui_ft.engine.data import BenchmarkItem, Example
from tui_ft.engine.data.templates import ALPACA_END_MARKER, IGNORE_INDEX, encode_text, render_prompt, tokenize_example

SCORERS = ("contains", "exact", "choice")
DEFAULT_MAX_NEW_TOKENS = 64  # benchmark answers are short; a longer reply only costs time

Progress = Callable[[int, int], None]  # (done, total)


class EvaluationStopped(Exception):
    """Raised when ``should_stop`` asked an evaluation to stop before it finished."""


@dataclass
class PerplexityResult:
    """Perplexity over a dataset.

    Attributes:
        perplexity: ``exp(nll / tokens)``.
        nll: The total negative log-likelihood (nats) of the scored tokens.
        tokens: How many tokens were scored (response tokens + EOS).
    """

    perplexity: float
    nll: float
    tokens: int


@dataclass
class ItemResult:
    """One benchmark item's outcome; ``details`` holds scorer extras (choice log-likelihoods)."""

    prompt: str
    expected: str
    reply: str
    correct: bool
    line: int = 0
    details: dict = field(default_factory=dict)


@dataclass
class BenchmarkResult:
    """A benchmark's score (fraction correct, 0..1) over ``n`` items, with every item kept.

    ``score_norm`` is the length-normalised choice accuracy (``choice`` scorer only).
    """

    score: float
    n: int
    items: list[ItemResult]
    scorer: str = "contains"
    score_norm: float | None = None

    def to_dict(self) -> dict:
        """The JSON shape: ``score``, ``n``, ``scorer``, ``items`` (and ``score_norm``)."""
        record = asdict(self)
        if self.score_norm is None:
            del record["score_norm"]
        return record


def score_contains(reply: str, expected: str) -> bool:
    """True when the expected answer, lower-cased, appears in the lower-cased reply.

    This is the seed chapter's rule; the expected answer's surrounding whitespace is ignored
    (a CSV cell such as ``" Paris"`` should not fail every reply).
    """
    return expected.strip().lower() in reply.lower()


def _normalise(text: str) -> str:
    text = text.strip()
    if text.endswith("."):
        text = text[:-1].rstrip()
    return text.casefold()


def score_exact(reply: str, expected: str) -> bool:
    """True when reply and expected are equal after stripping whitespace and one final period.

    The comparison ignores case (``"Paris."`` matches ``"paris"``); inner whitespace counts.
    """
    return _normalise(reply) == _normalise(expected)


REPLY_SCORERS = {"contains": score_contains, "exact": score_exact}


def labelled_logprobs(model, sequences: Sequence[tuple[list[int], list[int]]], pad_id: int | None, batch_size: int = 8,
                      progress: Progress | None = None) -> list[tuple[float, int]]:
    """Sum the log-probabilities of the labelled tokens of each sequence, batched with padding.

    Args:
        model: A causal language model.
        sequences: ``(input_ids, labels)`` pairs; a label of ``IGNORE_INDEX`` is not scored.
        pad_id: The id that fills padding (masked out by the attention mask, never scored).
        batch_size: Sequences per forward pass.
        progress: Called with ``(sequences done, total)`` after each batch.

    Returns:
        ``(sum of log-probabilities, scored token count)`` per sequence, in input order.
    """
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    # Sorting by length puts similar lengths in one batch, so there is little padding to compute.
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    with torch.inference_mode():
        for start in range(0, len(order), max(1, batch_size)):
            chunk = order[start : start + max(1, batch_size)]
            width = max(len(sequences[i][0]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id if pad_id is not None else 0, dtype=torch.long)
            labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, index in enumerate(chunk):
                tokens, token_labels = sequences[index]
                ids[row, : len(tokens)] = torch.tensor(tokens)
                labels[row, : len(tokens)] = torch.tensor(token_labels)
                mask[row, : len(tokens)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
            # Token t is predicted from the logits at t-1, as in the training loss. One row at a
            # time in fp32: a batch's fp32 logits at once (8 × 2,048 × 152k for Qwen) is 10 GB.
            targets = labels[:, 1:].to(device)
            nll = torch.cat([
                F.cross_entropy(logits[row : row + 1, :-1].float().transpose(1, 2), targets[row : row + 1],
                                ignore_index=IGNORE_INDEX, reduction="none")
                for row in range(len(chunk))
            ])
            del logits
            sums = (-nll.double()).sum(dim=1).tolist()
            counts = (targets != IGNORE_INDEX).sum(dim=1).tolist()
            for row, index in enumerate(chunk):
                results[index] = (sums[row], int(counts[row]))
            if progress:
                progress(min(start + len(chunk), len(order)), len(order))
    return results


def perplexity(model, tokenizer, examples: Sequence[Example], template: str, batch_size: int = 8,
               max_length: int | None = None, progress: Progress | None = None) -> PerplexityResult:
    """Perplexity of ``model`` over ``examples`` under ``template``, weighted by token.

    The scored tokens are those :func:`tokenize_example` labels (response tokens + EOS);
    the NLL is summed over the whole dataset before dividing, never averaged per batch.

    Args:
        model: A causal language model.
        tokenizer: Its tokenizer (``pad_token_id`` fills padding).
        examples: Conversations to score.
        template: ``alpaca`` or ``chat``.
        batch_size: Examples per forward pass.
        max_length: Truncate each example to this many tokens (``None``: no truncation).
        progress: Called with ``(examples done, total)``.

    Raises:
        ValueError: No token is scored (no examples, or every response truncated away).
    """
    sequences = []
    for example in examples:
        tokenized = tokenize_example(example, tokenizer, template, max_length)
        sequences.append((tokenized.input_ids, tokenized.labels))
    scored = labelled_logprobs(model, sequences, tokenizer.pad_token_id, batch_size, progress)
    tokens = sum(count for _, count in scored)
    if tokens == 0:
        raise ValueError("no response tokens to score (is max_length too small?)")
    nll = -sum(logprob for logprob, _ in scored)
    return PerplexityResult(math.exp(nll / tokens), nll, tokens)


def prompt_messages(item: BenchmarkItem) -> list[dict[str, str]]:
    """The conversation a benchmark item asks: one user turn."""
    return [{"role": "user", "content": item.prompt}]


def choice_sequence(tokenizer, prompt_text: str, choice: str) -> tuple[list[int], list[int]]:
    """Token ids of ``prompt_text + choice`` with labels on the choice's tokens only.

    The whole text is tokenized once and split where it stops matching the prompt's own
    tokens, as lm-evaluation-harness does, so a token that merges across the boundary
    counts as part of the choice. No end-of-turn marker is scored: choices of different
    lengths compete on their text alone.
    """
    prompt_ids = encode_text(tokenizer, prompt_text)
    full_ids = encode_text(tokenizer, prompt_text + choice)
    shared = 0
    while shared < min(len(prompt_ids), len(full_ids)) and prompt_ids[shared] == full_ids[shared]:
        shared += 1
    shared = max(1, shared) if len(full_ids) > 1 else 0  # the first token has no prediction
    return full_ids, [IGNORE_INDEX] * shared + full_ids[shared:]


def score_choices(model, tokenizer, items: Sequence[BenchmarkItem], template: str, batch_size: int = 8,
                  progress: Progress | None = None) -> BenchmarkResult:
    """Score multiple-choice items: the choice with the highest log-likelihood is the answer.

    ``score`` uses the summed log-probability of each choice; ``score_norm`` divides it by
    the choice's length in characters (lm-evaluation-harness's ``acc_norm``).

    Raises:
        ValueError: An item has no choices.
    """
    sequences, owners = [], []
    for index, item in enumerate(items):
        if not item.choices:
            raise ValueError(f"line {item.line}: the choice scorer needs 'choices' on every item")
        prompt_text = render_prompt(prompt_messages(item), tokenizer, template)
        for choice in item.choices:
            sequences.append(choice_sequence(tokenizer, prompt_text, choice))
            owners.append(index)
    total_choices = len(sequences)
    report = (lambda done, _total: progress(round(done * len(items) / total_choices), len(items))) if progress else None
    scored = labelled_logprobs(model, sequences, tokenizer.pad_token_id, batch_size, report)
    results, normalised_correct, position = [], 0, 0
    for item in items:
        logprobs = [scored[position + k][0] for k in range(len(item.choices))]
        position += len(item.choices)
        best = max(range(len(logprobs)), key=logprobs.__getitem__)
        norm = [lp / max(1, len(choice)) for lp, choice in zip(logprobs, item.choices, strict=False)]
        best_norm = max(range(len(norm)), key=norm.__getitem__)
        normalised_correct += item.choices[best_norm] == item.expected
        details = {"choices": list(item.choices), "loglikelihoods": logprobs, "reply_norm": item.choices[best_norm]}
        results.append(ItemResult(item.prompt, item.expected, item.choices[best], item.choices[best] == item.expected,
                                  item.line, details))
    n = len(results)
    score = sum(r.correct for r in results) / n if n else 0.0
    return BenchmarkResult(score, n, results, "choice", normalised_correct / n if n else 0.0)


def run_benchmark(model, tokenizer, items: Sequence[BenchmarkItem], template: str, settings=None,
                  scorer: str = "contains", progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None) -> BenchmarkResult:
    """Score ``model`` on benchmark items.

    With ``contains`` or ``exact`` each prompt is rendered with ``template`` and answered by
    :func:`tui_ft.engine.generation.generate_reply` (greedy by default); with ``choice`` the
    likeliest choice is the answer (no generation).

    Args:
        model: A causal language model.
        tokenizer: Its tokenizer.
        items: The benchmark items.
        template: ``alpaca`` or ``chat``.
        settings: A ``GenerationSettings``; ``None`` means greedy with 64 new tokens.
        scorer: ``contains``, ``exact`` or ``choice``.
        progress: Called with ``(items done, total)``.
        should_stop: Polled between items; when it returns true the run stops.

    Raises:
        EvaluationStopped: ``should_stop`` returned true.
        ValueError: An unknown scorer, or ``choice`` on items without choices.
    """
    if scorer == "choice":
        if should_stop and should_stop():
            raise EvaluationStopped()
        return score_choices(model, tokenizer, items, template, progress=progress)
    if scorer not in REPLY_SCORERS:
        raise ValueError(f"unknown scorer {scorer!r} (expected one of {', '.join(SCORERS)})")
    from tui_ft.engine.generation import GenerationSettings, generate_reply

    settings = settings or GenerationSettings(max_new_tokens=DEFAULT_MAX_NEW_TOKENS, temperature=0.0)
    stop_markers = (ALPACA_END_MARKER,) if template == "alpaca" else ()
    check = REPLY_SCORERS[scorer]
    results = []
    for done, item in enumerate(items):
        if should_stop and should_stop():
            raise EvaluationStopped()
        prompt_text = render_prompt(prompt_messages(item), tokenizer, template)
        reply = generate_reply(model, tokenizer, prompt_text, settings, stop_markers=stop_markers)
        results.append(ItemResult(item.prompt, item.expected, reply, check(reply, item.expected), item.line))
        if progress:
            progress(done + 1, len(items))
    n = len(results)
    return BenchmarkResult(sum(r.correct for r in results) / n if n else 0.0, n, results, scorer)
