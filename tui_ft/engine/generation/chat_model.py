"""A model ready to chat: loaded once per reference, with its template, history fitting and stats.

``load_chat_model`` caches the loaded model per ``(workspace, reference, dtype)``: the Chat
pane and the CLI ask for the same model many times. A run with a LoRA adapter is loaded as
base + adapter; ``use_adapter=False`` answers with the base model through peft's
``disable_adapter()`` context, so the base weights are never held twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

from tui_ft.engine.data.templates import ALPACA_END_MARKER, TEMPLATES, default_template, encode_text, render_prompt
from tui_ft.engine.generation.sampling import GenerationSettings
from tui_ft.engine.generation.streaming import StreamStats, stream_reply_ids
from tui_ft.engine.models.devices import cpu_has_amx, inference_device

DTYPES = ("auto", "float32", "bfloat16")
MAX_CHAT_MODELS = 2  # a compare holds two (a run's full weights and its base); a third evicts the oldest
_CACHE: dict[tuple, ChatModel] = {}  # in order of use, the most recent last
_CACHE_LOCK = threading.Lock()


def resolve_dtype(dtype: str = "auto", device: str = "cpu"):
    """The torch dtype for ``auto``/``float32``/``bfloat16``; auto is bf16 on CUDA and AMX CPUs.

    On a GPU without native bf16 (a V100, a T4), ``auto`` is fp16: emulated bf16 is slow there.
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (expected one of {', '.join(DTYPES)})")
    if dtype == "auto":
        if device.startswith("cuda"):
            from tui_ft.engine.models.devices import bf16_is_native

            return torch.bfloat16 if bf16_is_native(device) else torch.float16
        return torch.bfloat16 if cpu_has_amx() else torch.float32
    return getattr(torch, dtype)


def fit_history(
    messages: list[dict], tokenizer, template: str, budget: int
) -> tuple[list[int], str | None]:
    """Render and tokenize a conversation, dropping the oldest turns until it fits ``budget`` tokens.

    A system message at the start is always kept; turns are dropped from the oldest, and a
    conversation never starts with an assistant reply. When even the last user message alone
    is too long, its tokens are cut from the left.

    Returns:
        The prompt's token ids and a notice for the user (None when nothing was dropped).
    """
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = list(messages[len(system) :])
    dropped = 0
    while True:
        ids = encode_text(tokenizer, render_prompt(system + turns, tokenizer, template))
        if len(ids) <= budget or len(turns) <= 1:
            break
        turns.pop(0)
        dropped += 1
        while len(turns) > 1 and turns[0]["role"] != "user":
            turns.pop(0)
            dropped += 1
    notice = None
    if dropped:
        notice = f"the conversation is longer than the model's context: dropped the {dropped} oldest messages"
    if len(ids) > budget:
        ids = ids[len(ids) - budget :]
        notice = f"the prompt is longer than the model's context ({budget} tokens): its start was cut"
    return ids, notice


class ChatModel:
    """A loaded model with its tokenizer and prompt template, ready to stream replies.

    Attributes:
        ref: The model reference it was loaded from.
        template: ``alpaca`` or ``chat``: the run's template, else the tokenizer's default.
        tokenizer: The tokenizer.
        model: The model (a peft model when ``has_adapter``), in eval mode.
        has_adapter: True when a LoRA adapter is attached (``use_adapter`` then chooses).
        context_length: The most tokens the model attends to (prompt + reply).
        last_stats: :class:`StreamStats` of the last finished stream (None before).
        last_notice: A notice about the last prompt (history truncation), or None.
    """

    def __init__(self, ref: str, model, tokenizer, template: str | None = None, context_length: int | None = None):
        self.ref = ref
        self.model = model
        self.tokenizer = tokenizer
        self.template = template or default_template(tokenizer)
        self.has_adapter = hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
        config = model.config
        self.context_length = int(context_length or getattr(config, "max_position_embeddings", 0) or 2048)
        self.last_stats: StreamStats | None = None
        self.last_notice: str | None = None
        self.path = None  # the DecodePath replies use (decode_path.py); None: the lean decoder where it can
        # Held for each forward pass: the adapter switch belongs to the whole model.
        self._lock = threading.Lock()

    def prompt_ids(self, messages: list[dict], settings: GenerationSettings, template: str | None = None) -> list[int]:
        """The prompt's token ids for ``messages``, old turns dropped to leave room for the reply.

        Sets ``last_notice`` when turns were dropped.
        """
        template = template or self.template
        if template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r} (expected alpaca or chat)")
        budget = max(1, self.context_length - settings.max_new_tokens)
        ids, self.last_notice = fit_history(messages, self.tokenizer, template, budget)
        return ids

    def stream(
        self,
        messages: list[dict],
        settings: GenerationSettings,
        should_stop: Callable[[], bool] | None = None,
        use_adapter: bool = True,
        template: str | None = None,
    ) -> Iterator[str]:
        """Yield the reply to ``messages`` (``[{role, content}]``, ending with a user turn) in pieces.

        The prompt is built at once (``last_notice`` is set then); the reply is generated as
        the iterator is read, and ``last_stats`` is set when it ends. Several streams on one
        model may run at the same time (compare mode): their forward passes take turns.

        Args:
            messages: The conversation, oldest first; an optional system message first.
            settings: Sampling and length settings.
            should_stop: Checked between tokens; True ends the reply (``stopped_by`` cancelled).
            use_adapter: False answers with the base model (only matters with an adapter).
            template: Overrides ``self.template`` for this reply.

        Raises:
            ValueError: Invalid settings, or a conversation that does not end with a user turn.
        """
        settings.check()
        if not messages or messages[-1].get("role") != "user":
            raise ValueError("the conversation must end with a user message")
        template = template or self.template
        ids = self.prompt_ids(messages, settings, template)
        room = self.context_length - len(ids)
        if room < settings.max_new_tokens:
            settings = replace(settings, max_new_tokens=max(1, room))
        markers = (ALPACA_END_MARKER,) if template == "alpaca" else ()
        step_context = partial(self._step_context, use_adapter)
        return stream_reply_ids(
            self.model, self.tokenizer, ids, settings, markers, should_stop, self._record_stats, step_context,
            self.path,
        )

    @contextmanager
    def _step_context(self, use_adapter: bool):
        # The adapter switch is state of the whole model, so it is set per forward pass under
        # the lock: two replies (base and tuned) can interleave without seeing each other's.
        with self._lock:
            if self.has_adapter and not use_adapter:
                with self.model.disable_adapter():
                    yield
            else:
                yield

    def warm_up(self) -> None:
        """Generate two tokens once, so the first real reply does not pay one-time costs.

        Those are the decode weights' layout (see ``llama_decoder``) and oneDNN's kernel
        selection: together a few hundred milliseconds of the first reply's time to first token.
        """
        from tui_ft.engine.generation.token_loop import generate_token_ids

        ids = encode_text(self.tokenizer, "Hello")
        for _ in generate_token_ids(self.model, ids, GenerationSettings(max_new_tokens=2), eos_ids=set()):
            pass

    def _record_stats(self, stats: StreamStats) -> None:
        self.last_stats = stats

    def reply(
        self, messages: list[dict], settings: GenerationSettings, use_adapter: bool = True, template: str | None = None
    ) -> str:
        """The whole reply to ``messages``; see :meth:`stream`."""
        return "".join(self.stream(messages, settings, use_adapter=use_adapter, template=template))


def load_chat_model(ref: str, home: Path, dtype: str = "auto",
                    fits: Callable[[str, Path, str, int], None] | None = None, threads: int | None = None) -> ChatModel:
    """Load (or reuse) the model for ``ref``: the same reference and dtype give the same object.

    Args:
        ref: ``default``, a model folder, a cached model, or a run name in ``home``.
        home: The workspace holding ``checkpoints/``.
        dtype: ``auto`` (bf16 on CUDA and on CPUs with AMX, else fp32), ``float32`` or
            ``bfloat16``.
        fits: Called as ``fits(ref, model folder, device, bytes per parameter)`` before a
            model not cached yet is loaded; it raises to refuse one that will not fit
            (:func:`tui_ft.engine.runs.memory_plan.check_loading`, which this package may
            not import).
        threads: CPU threads the user asked for; ``None``: measured with the decoder
            (:mod:`~tui_ft.engine.generation.decode_path`, remembered per machine and model).

    Raises:
        ModelError: The reference cannot be resolved or loaded (one line for the user).
        ValueError: An unknown dtype.
    """

    from tui_ft.engine.models import load_model, resolve_model

    device = inference_device()
    torch_dtype = resolve_dtype(dtype, device)
    key = (str(Path(home).resolve()), ref, str(torch_dtype), threads, device)  # the device last: forget_chat_models reads it
    with _CACHE_LOCK:  # held while loading: two threads asking for one model load it once
        if key in _CACHE:
            _CACHE[key] = _CACHE.pop(key)  # most recently used last
            return _CACHE[key]
        while len(_CACHE) >= MAX_CHAT_MODELS:
            _CACHE.pop(next(iter(_CACHE)))  # the least recently used: its memory goes before the next loads
            _free_memory(device)
        resolved = resolve_model(ref, home)
        if fits is not None:
            fits(ref, resolved.path, device, torch_dtype.itemsize)
        model, tokenizer = load_model(resolved, dtype=torch_dtype, device=device)
        chat = ChatModel(ref, model, tokenizer, resolved.template)
        chat.warm_up()
        from tui_ft.engine.generation.decode_path import choose_decode_path
        from tui_ft.engine.models.default_model import cache_dir

        weights = f"{resolved.path.resolve()}|{resolved.adapter or ''}|{torch_dtype}"
        chat.path = choose_decode_path(model, weights, cache_dir(), threads)
        _CACHE[key] = chat
        return chat


def forget_chat_models() -> None:
    """Drop every cached model (frees memory; the next load reads the weights again)."""
    with _CACHE_LOCK:
        devices = {key[-1] for key in _CACHE}
        _CACHE.clear()
        for device in devices:
            _free_memory(device)


def _free_memory(device: str) -> None:
    """Give a dropped model's memory back: to the OS, and on a GPU out of torch's cache too
    (a training run on the same GPU may need it)."""
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
