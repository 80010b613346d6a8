"""Generation: streaming replies for chat and evaluation.

- :mod:`.chat_model` — a model loaded once per reference, with its template and history fitting;
- :mod:`.streaming` — stop rules and text pieces; :func:`generate_reply` for a whole reply;
- :mod:`.token_loop` — the KV-cache decoding loop; :mod:`.sampling` — the knobs and the sampler;
- :mod:`.detokenize` — token ids to text that is safe to show as it comes;
- :mod:`.transcript` — a conversation exported as Markdown;
- :mod:`.fast_cpu` — the lean Llama decoder for CPUs, with prompt-lookup decoding.

Importing this package loads neither torch nor transformers; loading a model does.
"""

from tui_ft.engine.generation.chat_model import ChatModel, fit_history, forget_chat_models, load_chat_model, resolve_dtype
from tui_ft.engine.generation.sampling import GenerationSettings
from tui_ft.engine.generation.streaming import StreamStats, generate_reply, stream_reply, stream_reply_ids

__all__ = [
    "ChatModel", "GenerationSettings", "StreamStats", "fit_history", "forget_chat_models", "generate_reply",
    "load_chat_model", "resolve_dtype", "stream_reply", "stream_reply_ids",
]
