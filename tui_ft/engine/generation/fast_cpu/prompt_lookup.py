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

import torch

from tui_ft.engine.generation.fast_cpu.onednn_weights import MAX_ROWS

MAX_GUESSES = MAX_ROWS - 1  # one pass runs the newest token and the guesses
# Guesses after a match of n tokens: a longer match is a better guess, and each guess costs
# about 4 % of a pass (measured on SmolLM2 in bf16); simulated on five chat replies, these
# limits saved the most time.
GUESSES_BY_NGRAM = {3: MAX_GUESSES, 2: 4, 1: 2}


class Guesser:
    """Guesses the next tokens from earlier occurrences of the text's last few tokens.

    An index from each n-gram to where it occurred grows with the text, so a guess costs
    the same at token 50 and at token 5000.
    """

    def __init__(self, tokens: list[int]):
        self.tokens: list[int] = []
        self.where: dict[tuple[int, ...], list[int]] = {}  # n-gram -> start positions
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        """Append tokens to the text."""
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens)
            for size in GUESSES_BY_NGRAM:
                if end >= size:
                    self.where.setdefault(tuple(self.tokens[end - size :]), []).append(end - size)

    def guess(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens that followed an earlier occurrence of the text's last n tokens.

        The longest n (3, 2, then 1) with a match is used. The latest occurrence with enough
        tokens after it wins (recent text predicts best), else the one with the most (in a
        loop, the latest occurrence is right before the end, with little after it).
        """
        text = self.tokens
        for size, most in GUESSES_BY_NGRAM.items():
            wanted = min(limit, most)
            if wanted <= 0 or len(text) <= size:
                continue
            best: list[int] = []
            for start in reversed(self.where.get(tuple(text[-size:]), [])[:-1]):  # [-1]: the tail itself
                follow = text[start + size : start + size + wanted]
                if len(follow) > len(best):
                    best = follow
                if len(best) == wanted:
                    break
            if best:
                return best
        return []


def guess_next_tokens(history: list[int], limit: int) -> list[int]:
    """One-off :meth:`Guesser.guess` for ``history``."""
    return Guesser(history).guess(limit)


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
        decoder: A fresh :class:`~tui_ft.engine.generation.fast_cpu.llama_decoder.LlamaDecoder` with ``exact_rows``.
        prompt_ids: The prompt's token ids.
        max_new_tokens: The most tokens to yield.
        eos_ids: Ids that end the reply (yielded, then the generator returns).
        enter: Entered around each forward pass.
        counters: When given, receives ``forward_passes`` and ``tokens`` counts.
    """
    counters = counters if counters is not None else {}
    counters.update(forward_passes=1, tokens=0)
    guesser = Guesser(prompt_ids)
    with torch.inference_mode(), enter():
        token = int(decoder.forward(torch.tensor([prompt_ids], device=decoder.device)).argmax(-1))
    while True:
        yield token
        counters["tokens"] += 1
        guesser.extend([token])
        if token in eos_ids or counters["tokens"] >= max_new_tokens:
            return
        guesses = guesser.guess(min(MAX_GUESSES, max_new_tokens - counters["tokens"] - 1))
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
            guesser.extend([guess])
            if guess in eos_ids or counters["tokens"] >= max_new_tokens:
                return
        token = choices[kept]
