"""Streaming a reply: prompt tokens in, text pieces out, with stop rules and speed statistics.

A reply stops at an EOS token, at a stop marker (the alpaca template's ``### Instruction:``,
never shown), at the token limit, or when ``should_stop()`` says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tui_ft.engine.data.templates import encode_text
from tui_ft.engine.generation.detokenize import IncrementalDecoder, MarkerGuard
from tui_ft.engine.generation.sampling import GenerationSettings
from tui_ft.engine.generation.token_loop import StepContext, eos_token_ids, generate_token_ids


@dataclass
class StreamStats:
    """Facts about one generated reply.

    Attributes:
        prompt_tokens: Tokens in the prompt given to the model.
        new_tokens: Tokens generated (the EOS token included when it ended the reply).
        time_to_first_token: Seconds from the start of the call to the first new token.
        tokens_per_s: Decode speed: tokens after the first, per second after the first.
        stopped_by: ``eos``, ``marker``, ``length`` or ``cancelled``.
    """

    prompt_tokens: int
    new_tokens: int
    time_to_first_token: float
    tokens_per_s: float
    stopped_by: str


def stream_reply_ids(
    model,
    tokenizer,
    prompt_ids: list[int],
    settings: GenerationSettings,
    stop_markers: tuple[str, ...] | list[str] = (),
    should_stop: Callable[[], bool] | None = None,
    on_done: Callable[[StreamStats], None] | None = None,
    step_context: StepContext | None = None,
    path=None,
) -> Iterator[str]:
    """Yield the reply to ``prompt_ids`` as text pieces; ``on_done`` receives the stats.

    Args:
        model: A causal language model (transformers or peft), in eval mode.
        tokenizer: Its tokenizer.
        prompt_ids: The prompt's token ids.
        settings: Sampling and length settings.
        stop_markers: Texts that end the reply; they never appear in it.
        should_stop: Checked between tokens; True cancels the reply.
        on_done: Called once with the :class:`StreamStats` when the stream ends.
        step_context: Entered around each forward pass (see ``generate_token_ids``).
        path: A :class:`~tui_ft.engine.generation.decode_path.DecodePath` (decoder and threads);
            ``None``: the lean decoder where the model allows it, torch's thread count as it is.
    """
    eos_ids = eos_token_ids(model, tokenizer)
    decoder, guard = IncrementalDecoder(tokenizer), MarkerGuard(stop_markers)
    start = time.perf_counter()
    first_at, count, stopped_by = None, 0, "length"
    try:
        if path is not None:
            import torch

            # Process-wide, and left so: every reply sets its own model's count before decoding.
            torch.set_num_threads(path.threads)
        lean = path.lean if path is not None else None
        tokens = generate_token_ids(model, prompt_ids, settings, eos_ids, step_context, lean=lean)
        while True:
            # Checked before each forward pass, so a cancelled reply ends within one token.
            if should_stop is not None and should_stop():
                stopped_by = "cancelled"
                break
            token_id = next(tokens, None)
            if token_id is None:
                break
            count += 1
            if first_at is None:
                first_at = time.perf_counter()
            if token_id in eos_ids:
                stopped_by = "eos"
                break
            piece = guard.push(decoder.push(token_id))
            if piece:
                yield piece
            if guard.stopped:
                stopped_by = "marker"
                break
        if not guard.stopped:
            piece = guard.push(decoder.flush())
            stopped_by = "marker" if guard.stopped else stopped_by
            piece += guard.flush()
            if piece:
                yield piece
    finally:
        if on_done is not None:
            end = time.perf_counter()
            decode_time = end - first_at if first_at is not None else 0.0
            on_done(
                StreamStats(
                    prompt_tokens=len(prompt_ids),
                    new_tokens=count,
                    time_to_first_token=(first_at or end) - start,
                    tokens_per_s=(count - 1) / decode_time if count > 1 and decode_time > 0 else 0.0,
                    stopped_by=stopped_by,
                )
            )


def stream_reply(
    model,
    tokenizer,
    prompt_text: str,
    settings: GenerationSettings,
    stop_markers: tuple[str, ...] | list[str] = (),
    should_stop: Callable[[], bool] | None = None,
    on_done: Callable[[StreamStats], None] | None = None,
) -> Iterator[str]:
    """Like :func:`stream_reply_ids`, from prompt text (tokenized with the default special tokens)."""
    prompt_ids = encode_text(tokenizer, prompt_text)
    return stream_reply_ids(model, tokenizer, prompt_ids, settings, stop_markers, should_stop, on_done)


def generate_reply(model, tokenizer, prompt_text: str, settings: GenerationSettings, stop_markers=()) -> str:
    """Generate the whole reply to an already rendered prompt (greedy when temperature is 0).

    Args:
        model: A causal language model (transformers or peft), in eval mode.
        tokenizer: Its tokenizer.
        prompt_text: The prompt, already rendered with its template (``render_prompt``).
        settings: Sampling and length settings.
        stop_markers: Texts that end the reply (e.g. ``templates.ALPACA_END_MARKER``); they
            are not part of the returned text.

    Returns:
        The reply text, without EOS, stop marker or trailing whitespace.
    """
    return "".join(stream_reply(model, tokenizer, prompt_text, settings, stop_markers))
