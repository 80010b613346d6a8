"""Generation for chat and evaluation: the public entry points.

- :func:`generate_reply` — the whole reply to a rendered prompt (evaluation code);
- :func:`load_chat_model` / :class:`ChatModel` — a cached model with its template that
  streams replies to a conversation (the Chat pane and ``tui-ft chat``);
- :class:`GenerationSettings`, :class:`StreamStats` — the knobs and the facts of a reply.

The work is done in :mod:`~tui_ft.engine.streaming` (stop rules, text pieces),
:mod:`~tui_ft.engine.token_loop` (KV-cache decoding), :mod:`~tui_ft.engine.sampling` and
:mod:`~tui_ft.engine.chat_model`.
"""

from __future__ import annotations

from tui_ft.engine.chat_model import ChatModel, fit_history, forget_chat_models, load_chat_model, resolve_dtype
from tui_ft.engine.sampling import GenerationSettings
from tui_ft.engine.streaming import StreamStats, stream_reply, stream_reply_ids

__all__ = [
    "ChatModel",
    "GenerationSettings",
    "StreamStats",
    "fit_history",
    "forget_chat_models",
    "generate_reply",
    "load_chat_model",
    "resolve_dtype",
    "stream_reply",
    "stream_reply_ids",
]


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
