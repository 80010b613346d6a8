"""Greedy decoding that checks several guessed tokens per forward pass (prompt lookup).

At batch 1 a decoding step reads every weight to produce one token; reading them once for
several positions costs about the same (measured: 8 positions take no longer than 1 with
bf16 on this CPU). So the next tokens are guessed by finding the last few tokens earlier in
the text (replies often repeat names, phrases and code from the prompt or from themselves),
all guesses are run in one pass, and the ones the model agrees with are kept. This is
transformers' "prompt lookup decoding"; it changes nothing in the output: every kept token
is the model's own greedy choice, and the decoder computes each position bit for bit as it
would alone (``LlamaDecoder.exact_rows``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from tui_ft.engine.llama_decoder import MAX_ROWS

MAX_GUESSES = MAX_ROWS - 1  # one pass runs the newest token and the guesses
NGRAM_SIZES = (3, 2, 1)


def guess_next_tokens(history: list[int], limit: int) -> list[int]:
    """Up to ``limit`` tokens that followed an earlier occurrence of the text's last n tokens.

    The latest occurrence with ``limit`` tokens after it wins (recent text predicts best);
    else the one with the most tokens after it (in a loop, the latest occurrence is right
    before the end and has almost nothing after it).
    """
    if limit <= 0:
        return []
    for size in NGRAM_SIZES:
        if len(history) <= size:
            continue
        tail, best = history[-size:], []
        for start in range(len(history) - size - 1, -1, -1):
            if history[start : start + size] == tail:
                follow = history[start + size : start + size + limit]
                if len(follow) > len(best):
                    best = follow
                if len(best) == limit:
                    break
        if best:
            return best
    return []


def greedy_with_lookup(
    decoder,
    prompt_ids: list[int],
    max_new_tokens: int,
    eos_ids: set[int],
    enter: Callable[[], AbstractContextManager],
    counters: dict | None = None,
) -> Iterator[int]:
    """Yield greedy tokens, checking guessed tokens in batches; see the module docstring.

    Args:
        decoder: A fresh :class:`~tui_ft.engine.llama_decoder.LlamaDecoder` with ``exact_rows``.
        prompt_ids: The prompt's token ids.
        max_new_tokens: The most tokens to yield.
        eos_ids: Ids that end the reply (yielded, then the generator returns).
        enter: Entered around each forward pass.
        counters: When given, receives ``forward_passes`` and ``tokens`` counts.
    """
    import torch

    counters = counters if counters is not None else {}
    counters.update(forward_passes=1, tokens=0)
    history = list(prompt_ids)
    with torch.inference_mode(), enter():
        token = int(decoder.forward(torch.tensor([prompt_ids], device=decoder.device)).argmax(-1))
    while True:
        yield token
        counters["tokens"] += 1
        history.append(token)
        if token in eos_ids or counters["tokens"] >= max_new_tokens:
            return
        guesses = guess_next_tokens(history, min(MAX_GUESSES, max_new_tokens - counters["tokens"] - 1))
        before = decoder.length
        with torch.inference_mode(), enter():
            logits = decoder.forward(torch.tensor([[token] + guesses], device=decoder.device), every_position=True)
            choices = logits.argmax(-1).tolist()
        counters["forward_passes"] += 1
        kept = 0
        while kept < len(guesses) and choices[kept] == guesses[kept]:
            kept += 1
        decoder.rewind(before + 1 + kept)  # the cache keeps the token and the agreed guesses
        for guess in guesses[:kept]:
            yield guess
            counters["tokens"] += 1
            history.append(guess)
            if guess in eos_ids or counters["tokens"] >= max_new_tokens:
                return
        token = choices[kept]
