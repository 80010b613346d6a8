"""The decoding loop: one forward pass per new token, reusing the attention KV cache.

The prompt is run once (prefill); every later step feeds only the newest token and reads
the keys and values of earlier positions from the cache, so a step costs the same at
token 10 and token 500 (the seed's loop recomputed the whole sequence every token).
"""

from __future__ import annotations

from collections.abc import Iterator

from tui_ft.engine.sampling import GenerationSettings, TokenSampler


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


def generate_token_ids(
    model,
    prompt_ids: list[int],
    settings: GenerationSettings,
    eos_ids: set[int],
) -> Iterator[int]:
    """Yield new token ids one at a time; the EOS token that ends the reply is yielded too.

    The generator is lazy: the forward pass for a token runs when the caller asks for it,
    so the caller may stop (a marker, a cancel) between any two tokens at no cost.
    """
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    sampler = TokenSampler(settings, device)
    seen = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    cache = DynamicCache(config=model.config)
    step_input = seen
    with torch.inference_mode():
        for _ in range(settings.max_new_tokens):
            out = model(input_ids=step_input, cache=cache, use_cache=True, logits_to_keep=1)
            token = sampler.next_token(seen, out.logits[:, -1, :])
            token_id = int(token)
            yield token_id
            if token_id in eos_ids:
                return
            seen = torch.cat([seen, token], dim=-1)
            step_input = token
