"""The decoding loop: one forward pass per new token, reusing the attention KV cache.

The prompt is run once (prefill); every later step feeds only the newest token and reads
the keys and values of earlier positions from the cache, so a step costs the same at
token 10 and token 500 (the seed's loop recomputed the whole sequence every token).

Llama-architecture models run through :class:`~tui_ft.engine.generation.fast_cpu.llama_decoder.LlamaDecoder`
(the same arithmetic with less Python per token); others through transformers' forward
with a ``DynamicCache``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext

from tui_ft.engine.generation.sampling import GenerationSettings, TokenSampler

StepContext = Callable[[], AbstractContextManager]


def eos_token_ids(model, tokenizer) -> set[int]:
    """Every id that ends a reply: the tokenizer's EOS, the config's and generation_config's."""
    ids: set[int] = set()
    sources = [getattr(tokenizer, "eos_token_id", None), getattr(model.config, "eos_token_id", None)]
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        sources.append(generation_config.eos_token_id)
    for value in sources:
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


def _hf_forward(model):
    """A step function over transformers' own forward and a ``DynamicCache``."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)

    def step(input_ids):
        return model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]

    return step


def generate_token_ids(
    model,
    prompt_ids: list[int],
    settings: GenerationSettings,
    eos_ids: set[int],
    step_context: StepContext | None = None,
    lean: bool | None = None,
    lookup: bool = True,
) -> Iterator[int]:
    """Yield new token ids one at a time; the EOS token that ends the reply is yielded too.

    The generator is lazy: the forward pass for a token runs when the caller asks for it,
    so the caller may stop (a marker, a cancel) between any two tokens at no cost.

    Args:
        model: A causal language model (transformers or peft), in eval mode.
        prompt_ids: The prompt's token ids.
        settings: Sampling and length settings.
        eos_ids: Ids that end the reply.
        step_context: Entered around each forward pass (a lock, peft's ``disable_adapter``),
            so replies that share a model can interleave token by token.
        lean: Force the lean Llama path on or off (None: use it when the model supports it).
        lookup: Allow prompt-lookup decoding (greedy only, where it is exact; see
            :mod:`~tui_ft.engine.generation.fast_cpu.prompt_lookup`).
    """
    import torch

    # The lean decoder imports torch at its top: loaded here, when a reply is decoded, never
    # when the Chat pane's module is imported.
    from tui_ft.engine.generation.fast_cpu.llama_decoder import LlamaDecoder, supports_lean_decoding
    from tui_ft.engine.generation.fast_cpu.prompt_lookup import greedy_with_lookup

    device = next(model.parameters()).device
    sampler = TokenSampler(settings, device)
    enter = step_context or nullcontext
    if lean is None:
        lean = supports_lean_decoding(model)
    decoder = LlamaDecoder(model, len(prompt_ids) + settings.max_new_tokens) if lean else None
    if lookup and decoder is not None and decoder.exact_rows and settings.greedy and settings.repetition_penalty == 1.0:
        yield from greedy_with_lookup(decoder, prompt_ids, settings.max_new_tokens, eos_ids, enter)
        return
    step = decoder.forward if decoder is not None else _hf_forward(model)
    seen = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    step_input = seen
    for _ in range(settings.max_new_tokens):
        with torch.inference_mode(), enter():
            token = sampler.next_token(seen, step(step_input))
            if settings.repetition_penalty != 1.0:
                seen = torch.cat([seen, token], dim=-1)  # only the penalty reads past tokens
        token_id = int(token)
        yield token_id
        if token_id in eos_ids:
            return
        step_input = token
