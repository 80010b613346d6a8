"""The memory plan: a run's peak memory per device, predicted before launch, and the refusal.

:func:`plan_memory` sets what a run holds at its peak (:mod:`.memory_count`: frozen and
trained weights, gradients, AdamW's state, activations with the logits and the loss, the
process's overhead) against the device's free memory (:mod:`.device_memory`).
:func:`check_memory` is what ``create_run`` calls: a run that will not fit is refused with one
line naming the cheapest fix (:func:`cheapest_fix`), unless ``ignore_memory_plan`` is set.
Batches are padded to their longest example, so the plan measures that
(:func:`longest_example_tokens`, or estimated without a tokenizer: :func:`longest_example_estimate`).

Nothing here imports torch: the Train form plans as its fields change.
"""

from __future__ import annotations

import functools
import heapq
import json
from dataclasses import replace
from pathlib import Path

from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.device_memory import device_capacity, resolve_device_kind
from tui_ft.engine.runs.memory_count import (
    CUDA_CONTEXT,
    MemoryPlan,
    checkpoint_bytes,
    count_memory,
    human_bytes,
    read_shape,
)

__all__ = ["MemoryPlan", "MemoryPlanError", "check_loading", "check_memory", "cheapest_fix", "describe_changes",
           "longest_example_estimate", "longest_example_tokens", "plan_memory"]


class MemoryPlanError(Exception):
    """A run the plan says will not fit (one line naming the cheapest fix), or a model it cannot read."""


def plan_memory(config: TrainConfig, model: Path | dict, capacity: int | None = -1,
                longest: int | None = None) -> MemoryPlan:
    """Predict the run's peak memory per device.

    Args:
        config: The run's config (method defaults are filled in here).
        model: The model folder (its ``config.json`` is read) or the parsed ``config.json``.
        capacity: The device's free memory in bytes; ``-1`` asks the device (or
            ``$TUI_FT_MEMORY_CAPACITY_BYTES``), ``None`` leaves it unknown.
        longest: The longest training example in tokens (:func:`longest_example_tokens`):
            batches are padded to their longest example, never to ``max_length``. ``None``:
            every example may reach ``max_length``.

    Raises:
        MemoryPlanError: ``config.json`` is missing or is not a decoder the plan can read.
    """
    try:
        shape = read_shape(model)
    except ValueError as error:
        raise MemoryPlanError(str(error)) from None
    plan = count_memory(config.resolved(), shape, checkpoint_bytes(model), longest)
    plan.capacity_bytes = device_capacity(plan.device, plan.devices) if capacity == -1 else capacity
    return plan


def longest_example_tokens(dataset: Path, tokenizer, template: str) -> int:
    """The longest training example of ``dataset`` in tokens (both replies of a preference pair).

    Only the ``LENGTH_SAMPLE`` longest by characters are rendered and tokenized: a dataset of
    100,000 examples is measured in the time of a few dozen.
    """
    from tui_ft.engine.data import load_dataset, preference_examples, sft_examples
    from tui_ft.engine.data.templates import tokenize_example

    data = load_dataset(dataset)
    if data.format == "preference":
        examples = [example for pair in data.records for example in preference_examples(pair)]
    else:
        examples = sft_examples(data)
    longest = heapq.nlargest(LENGTH_SAMPLE, examples, key=_characters)
    return max((tokenize_example(example, tokenizer, template).full_length for example in longest), default=0)


def longest_example_estimate(dataset: Path) -> int:
    """About how many tokens the longest example of ``dataset`` has, without a tokenizer.

    English runs about four bytes a token, and a template adds up to a few dozen tokens a
    turn (a chat template's default system prompt). The Train form plans with this as its
    fields change (the dashboard loads no tokenizer); :func:`create_run` measures the longest
    example with the tokenizer. Cached by file size and modification time.
    """
    path = Path(dataset)
    stat = path.stat()
    return _longest_estimate(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _longest_estimate(path: str, _size: int, _mtime: int) -> int:
    from tui_ft.engine.data import load_dataset, preference_examples, sft_examples

    data = load_dataset(path)
    if data.format == "preference":
        examples = [example for pair in data.records for example in preference_examples(pair)]
    else:
        examples = sft_examples(data)
    return max((estimated_tokens(example) for example in examples), default=0)


def estimated_tokens(example) -> int:
    """About how many tokens ``example`` makes with its template, from its bytes (no tokenizer)."""
    text = example.input + "".join(str(m.get("content") or "") for m in example.messages)
    return len(text.encode()) // BYTES_PER_TOKEN + TEMPLATE_TOKENS * len(example.messages)


BYTES_PER_TOKEN = 4
TEMPLATE_TOKENS = 16  # a turn's markup and its share of a default system prompt (SmolLM2's chat template: 16-29)


def _characters(example) -> int:
    return len(example.input) + sum(len(str(m.get("content") or "")) + TURN_CHARACTERS for m in example.messages)


LENGTH_SAMPLE = 64
TURN_CHARACTERS = 16  # a turn's template markup, roughly, so many short turns outweigh one long one


def cheapest_fix(config: TrainConfig, model: Path | dict, capacity: int,
                 longest: int | None = None) -> tuple[str, MemoryPlan] | None:
    """The cheapest changes that make the run fit, as one phrase, with their plan; ``None`` when none do.

    Changes are tried in order of preference and kept while they help: activation
    checkpointing (if off), qlora (for lora), a smaller batch (gradient accumulation keeps
    the effective batch), a shorter length, FSDP over every visible GPU (full fine-tuning).
    """
    config = config.resolved()
    values = model if isinstance(model, dict) else _config_json(model)
    current = plan_memory(config, values, capacity, longest)
    applied: dict = {}
    for changes in _fixes(config, longest):
        plan = plan_memory(replace(config, **(applied | changes)), values, capacity, longest)
        if plan.peak_bytes < current.peak_bytes * MIN_GAIN:  # a change that does not help is not advised
            applied, current = applied | changes, plan
            if current.fits:
                return describe_changes(applied), current
    return None


MIN_GAIN = 0.95  # a fix must save at least 5 % of the peak to be advised


def _config_json(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise MemoryPlanError(f"{folder}: cannot read config.json ({error})") from None


def _fixes(config: TrainConfig, longest: int | None = None):
    """Candidate changes in order of preference (each batch or length step replaces the previous one)."""
    if not config.gradient_checkpointing:
        yield {"gradient_checkpointing": True}
    if config.method == "lora":
        yield {"method": "qlora"}
    ranks = max(1, config.nproc)
    batch, accum = config.batch_size, config.grad_accum
    while batch % 2 == 0 and (batch // 2) % ranks == 0:
        batch, accum = batch // 2, accum * 2
        yield {"batch_size": batch, "grad_accum": accum}
    length = min(config.max_length, longest or config.max_length)
    while length > MIN_LENGTH:
        length = max(MIN_LENGTH, length // 2)
        yield {"max_length": length}
    if config.method == "full" and resolve_device_kind(config.device) == "cuda":
        from tui_ft.engine.models.devices import visible_gpu_count

        gpus = visible_gpu_count()
        if gpus > 1 and (gpus > ranks or not config.fsdp):
            yield {"nproc": gpus, "fsdp": True}


MIN_LENGTH = 128  # shorter than this cuts most examples: not worth advising


def describe_changes(changes: dict) -> str:
    """The changes as words and the settings that make them (CLI flags, the form's fields alike)."""
    parts = []
    if changes.get("gradient_checkpointing"):
        parts.append("activation checkpointing (--set gradient_checkpointing=true)")
    if changes.get("method"):
        parts.append(f"method {changes['method']} (--method {changes['method']})")
    if "batch_size" in changes:
        batch, accum = changes["batch_size"], changes["grad_accum"]
        parts.append(f"batch size {batch} with {accum} accumulation steps (--batch-size {batch} --grad-accum {accum})")
    if "max_length" in changes:
        parts.append(f"max length {changes['max_length']} (--max-length {changes['max_length']})")
    if changes.get("fsdp"):
        parts.append(f"FSDP over {changes['nproc']} GPUs (--nproc {changes['nproc']} --set fsdp=true)")
    return " and ".join(parts)


def check_memory(config: TrainConfig, model_path: Path, longest: int | None = None) -> MemoryPlan | None:
    """The run's plan; raises when it will not fit and ``ignore_memory_plan`` is off.

    A model whose ``config.json`` the plan cannot read is not refused (``None``): the plan is
    a guard against a sure failure, never a reason to refuse what it does not understand.

    Raises:
        MemoryPlanError: One line: what the run needs, what the device has, and the cheapest fix.
    """
    if config.ignore_memory_plan:
        return None
    try:
        plan = plan_memory(config, model_path, longest=longest)
    except MemoryPlanError:
        return None
    if plan.fits:
        return plan
    fix = cheapest_fix(config, model_path, plan.capacity_bytes, longest)
    advice = (f"try {fix[0]}: {fix[1].summary()}" if fix
              else "no setting makes it fit: use a smaller model or a device with more memory")
    raise MemoryPlanError(f"not started, it will not fit: {plan.summary()}; {advice}; "
                          "or --set ignore_memory_plan=true to start anyway")


CHAT_CONTEXT_TOKENS = 4096  # the key/value cache a chat or an evaluation is planned with
LOADING_SLACK = 1.1  # transformers' loading holds a layer or two twice, and the allocator rounds up


def loading_bytes(model_path: Path, device: str, bytes_per_param: int, context_tokens: int = CHAT_CONTEXT_TOKENS) -> int:
    """What holding a model for chat or evaluation takes on ``device``: weights, key/value cache, CUDA context."""
    shape = read_shape(model_path)
    cache = 2 * shape.layers * shape.kv_heads * shape.head_dim * context_tokens * bytes_per_param
    context = CUDA_CONTEXT if device.startswith("cuda") else 0
    return int((shape.total_params * bytes_per_param + cache) * LOADING_SLACK + context)


def check_loading(ref: str, model_path: Path, device: str, bytes_per_param: int) -> None:
    """Refuse, before any weight is read, a model that will not fit in the free memory of ``device``.

    Chat and evaluation load into the process that asks (the dashboard, for Chat): a model
    larger than the free RAM or GPU memory would have it killed, or a training run on the same
    GPU run out of memory. A model whose size cannot be told (no readable ``config.json``) is
    let through: loading says what is wrong with it.

    Raises:
        ModelError: One line with the need, what is free, and what to do.
    """
    from tui_ft.engine.models import ModelError

    try:
        need = loading_bytes(model_path, device, bytes_per_param)
    except ValueError:
        return
    free = device_capacity(device)
    if free is None or need <= free:
        return
    where = "GPU memory" if device.startswith("cuda") else "RAM"
    advice = ("another GPU (CUDA_VISIBLE_DEVICES) or the CPU (--device cpu), or stop a run using this one"
              if device.startswith("cuda") else "a smaller model, or close what else holds memory")
    raise ModelError(f"{ref}: needs about {human_bytes(need)} of {where} on {device} and {human_bytes(free)} is free: "
                     f"{advice}")
