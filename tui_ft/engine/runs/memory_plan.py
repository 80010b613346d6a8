"""The memory plan: a run's peak memory per device, predicted before launch from ``config.json``.

:func:`plan_memory` counts what a run holds at its peak, split into the frozen weights, the
trained weights, their gradients, AdamW's state, the activations kept for the backward pass
(the output head's logits and the loss included) and the process's own overhead, and sets it
against the device's capacity (free memory on a GPU, available RAM on the CPU).
:func:`check_memory` refuses a run that will not fit with one line naming the cheapest fix.

Nothing here imports torch: the dashboard plans as the form changes. The figures follow what
the engine does (:mod:`tui_ft.engine.training.weight_storage`): under ``weight_dtype=auto``
frozen weights are 16-bit, trained ones and their optimizer state fp32; DPO's reference
log-probabilities are computed once before training (``training/dpo.py``), so no reference
copy of the model is held, but that pass runs eight pairs at a time without gradients and
can be the peak. The activation counts are per saved tensor of a Llama-shaped decoder layer;
the constants below were fitted on measured peaks (``bench/memory_plan.py``, README).
"""

from __future__ import annotations

import functools
import heapq
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tui_ft.engine.runs.config import ALL_LINEAR, DEFAULT_LORA_TARGETS, TrainConfig

CAPACITY_ENV = "TUI_FT_MEMORY_CAPACITY_BYTES"  # tests (and users who share a machine) set the capacity
GB = 1e9
# What a process holds before any weight: Python, torch, transformers, peft, the tokenizer and
# the data (CPU); the CUDA context and cuBLAS workspace (GPU).
CPU_BASELINE = 0.62 * GB
CPU_LOADING_BASELINE = 0.4 * GB  # the same before the data is tokenized and anything is freed
CUDA_CONTEXT = 0.5 * GB
CUDA_ALLOCATOR = 0.08  # the caching allocator's fragmentation, a share of what is allocated
CPU_ALLOCATOR = 0.10  # glibc's arenas keep freed activation memory around
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits, a uint8 absmax per 64 weights, an fp32 one per 256 absmax
REFERENCE_PAIRS = 8  # DPO's reference pass: pairs a batch (training/dpo.py, reference_logps)
MLP_NAMES = ("gate_proj", "up_proj", "down_proj")
ATTENTION_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj")
NVIDIA_SMI_TIMEOUT_S = 3.0


class MemoryPlanError(Exception):
    """A run the plan says will not fit; the message is one line naming the cheapest fix."""


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a Llama-shaped decoder read from ``config.json``."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, config: dict) -> ModelShape:
        """Read a transformers ``config.json`` (a multimodal model's ``text_config`` when it has one).

        GPT-2's names (``n_embd``, ``n_layer``, ``n_head``, ``n_inner``) are read too.
        """
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config

        def first(*names, default=None):
            return next((text[name] for name in names if text.get(name) is not None), default)

        hidden = int(first("hidden_size", "n_embd", "d_model"))
        heads = int(first("num_attention_heads", "n_head", default=max(1, hidden // 64)))
        return cls(
            hidden=hidden, intermediate=int(first("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)),
            layers=int(first("num_hidden_layers", "n_layer")), heads=heads,
            kv_heads=int(first("num_key_value_heads", default=heads)),
            head_dim=int(first("head_dim", default=hidden // heads)), vocab=int(text["vocab_size"]),
            tied=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
        )

    def linears(self) -> dict[str, tuple[int, int]]:
        """Each decoder layer's linear layers as ``name: (in_features, out_features)``."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def layer_linear_params(self) -> int:
        return sum(a * b for a, b in self.linears().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def norm_params(self) -> int:
        """Norm scales: two a layer and the final one (vectors stay fp32 under ``auto``)."""
        return (2 * self.layers + 1) * self.hidden

    @property
    def total_params(self) -> int:
        head = 0 if self.tied else self.embedding_params
        return self.layers * self.layer_linear_params + self.embedding_params + head + self.norm_params


@dataclass
class MemoryPlan:
    """A run's predicted peak on one device, by component, against the device's capacity.

    Attributes:
        device: The device planned for (``cpu``, ``cuda:0``...); for several GPUs, the first.
        components: Bytes by component, in display order: ``weights`` (frozen), ``trainable``,
            ``gradients``, ``optimizer``, ``activations``, ``overhead``.
        not_at_once: Bytes counted in two components that are never held together (gradients
            are allocated as the backward pass frees activations); subtracted from the sum.
        peak_bytes: The predicted peak: the components' sum less ``not_at_once``, or the DPO
            reference pass or the CPU's model loading where that is higher.
        capacity_bytes: Free memory on the device (``None`` when it cannot be told).
        notes: A short explanation per component.
        devices: How many devices (ranks) share the run; on the CPU they share one memory and
            the plan counts every rank.
        phase: What sets the peak: ``training``, ``reference pass`` or ``loading``.
    """

    device: str
    components: dict[str, int]
    not_at_once: int
    peak_bytes: int
    capacity_bytes: int | None
    notes: dict[str, str] = field(default_factory=dict)
    devices: int = 1
    phase: str = "training"

    @property
    def fits(self) -> bool:
        """True when the peak is within the capacity (or the capacity is unknown)."""
        return self.capacity_bytes is None or self.peak_bytes <= self.capacity_bytes

    def summary(self) -> str:
        """One line: ``needs ≈ 18.2 GB of 80 GB on cuda:0``."""
        where = self.device + (f" (each of {self.devices} GPUs)" if self.devices > 1 and self.device != "cpu" else "")
        if self.capacity_bytes is None:
            return f"needs ≈ {human_bytes(self.peak_bytes)} on {where} (free memory unknown)"
        return f"needs ≈ {human_bytes(self.peak_bytes)} of {human_bytes(self.capacity_bytes)} on {where}"

    def table(self) -> str:
        """The components, one a line, then the summary and whether it fits."""
        labels = {"weights": "weights (frozen)", "trainable": "trainable parameters", "gradients": "gradients",
                  "optimizer": "optimizer state", "activations": "activations", "overhead": "overhead"}
        lines = [f"{'component':<22}{'memory':>10}  note"]
        for name, value in self.components.items():
            lines.append(f"{labels[name]:<22}{human_bytes(value):>10}  {self.notes.get(name, '')}".rstrip())
        if self.not_at_once:
            lines.append(f"{'not held at once':<22}{'-' + human_bytes(self.not_at_once):>10}  "
                         "gradients grow as the backward pass frees activations")
        total_note = "" if self.phase == "training" else f"the {self.phase} is the peak"
        lines.append(f"{'peak':<22}{human_bytes(self.peak_bytes):>10}  {total_note}".rstrip())
        verdict = "fits" if self.fits else "does NOT fit"
        lines.append(f"{self.summary()}: {verdict}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"device": self.device, "devices": self.devices, "components": dict(self.components),
                "not_at_once": self.not_at_once, "peak_bytes": self.peak_bytes, "phase": self.phase,
                "capacity_bytes": self.capacity_bytes, "fits": self.fits, "summary": self.summary(),
                "notes": dict(self.notes)}


def human_bytes(value: float) -> str:
    """``1.4 GB``, ``512 MB``, ``80 GB`` (decimal units, as GPU makers count)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            shown = value / size
            return f"{shown:.0f} {unit}" if shown >= 100 or shown == int(shown) else f"{shown:.1f} {unit}"
    return f"{int(value)} B"


# ----- the count ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    """What the count needs to know about a run, resolved once."""

    shape: ModelShape
    config: TrainConfig
    kind: str  # cpu, cuda, mps
    compute_bytes: int  # 2 under bf16 autocast, 4 in fp32
    frozen_bytes: float  # a frozen linear weight's bytes a parameter
    trained_bytes: int
    targets: frozenset[str]  # LoRA targets among the decoder's linear names
    trained_layers: int  # layers whose activations are kept (freeze keeps none for the frozen ones)
    ranks: int
    sharded: bool
    file_bytes: int  # the checkpoint's size on disk
    length: int  # tokens a row: max_length, or the longest example when that is shorter


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
    setup = _setup(config.resolved(), read_shape(model), checkpoint_bytes(model), longest)
    plan = _count(setup)
    plan.capacity_bytes = device_capacity(plan.device, setup.ranks) if capacity == -1 else capacity
    return plan


def read_shape(model: Path | dict) -> ModelShape:
    """The model's shape from its folder's ``config.json`` (or the parsed dict)."""
    if isinstance(model, dict):
        values = model
    else:
        path = Path(model) / "config.json"
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise MemoryPlanError(f"{path}: cannot read the model's config for the memory plan ({error})") from None
    try:
        return ModelShape.from_config(values)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError):
        raise MemoryPlanError("the model's config.json has no hidden_size, num_hidden_layers and vocab_size: "
                              "cannot plan its memory") from None


def checkpoint_bytes(model: Path | dict) -> int:
    """The size of the model's weight files (``*.safetensors``), or what ``config.json``'s dtype implies."""
    if isinstance(model, dict):
        size = {"float32": 4, "bfloat16": 2, "float16": 2}.get(str(model.get("dtype") or model.get("torch_dtype")))
        try:
            return size * ModelShape.from_config(model).total_params if size else 0
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return 0
    return sum(path.stat().st_size for path in Path(model).glob("*.safetensors") if path.is_file())


def _setup(config: TrainConfig, shape: ModelShape, file_bytes: int = 0, longest: int | None = None) -> _Setup:
    kind = resolve_device_kind(config.device)
    ranks = max(1, config.nproc)
    every_weight = config.method == "full" or (config.method == "dpo" and config.dpo_mode == "full")
    half = 2
    if config.weight_dtype == "float32" or (config.weight_dtype == "auto" and every_weight):
        frozen = 4.0
    else:
        frozen = float(half)
    if config.method == "qlora":
        frozen = NF4_BYTES
    trained = 2 if config.weight_dtype == "bfloat16" else 4
    targets = config.lora_targets or list(DEFAULT_LORA_TARGETS)
    names = set(shape.linears()) if ALL_LINEAR in targets else {t for t in targets if t in shape.linears()}
    trained_layers = shape.layers
    if config.method == "freeze":
        frozen_layers = shape.layers // 2 if config.freeze_layers is None else min(shape.layers, config.freeze_layers)
        trained_layers = shape.layers - frozen_layers
    return _Setup(shape=shape, config=config, kind=kind, compute_bytes=_compute_bytes(config, kind, shape),
                  frozen_bytes=frozen, trained_bytes=trained, targets=frozenset(names) if config.uses_lora else frozenset(),
                  trained_layers=trained_layers, ranks=ranks, sharded=config.fsdp and ranks > 1,
                  file_bytes=file_bytes, length=min(config.max_length, longest or config.max_length))


def _count(s: _Setup) -> MemoryPlan:
    shape, config = s.shape, s.config
    trainable, frozen_weights, lora_params, trained_params = _weights(s)
    gradients = trainable  # a gradient per trained weight, in its dtype
    optimizer = trained_params * 2 * s.trained_bytes  # AdamW: exp_avg and exp_avg_sq
    if s.sharded:  # FSDP shards weights, gradients and state; one layer is gathered whole at a time
        gathered = shape.layer_linear_params * s.trained_bytes
        frozen_weights, trainable = frozen_weights // s.ranks, trainable // s.ranks + gathered
        gradients, optimizer = gradients // s.ranks + gathered, optimizer // s.ranks
    rows = math.ceil(config.batch_size / s.ranks) * (2 if config.method == "dpo" else 1)
    tokens = rows * s.length
    activations, head_grads, notes = _activations(s, tokens, trained_params, lora_params)
    if s.kind == "cuda":
        overhead = CUDA_CONTEXT + CUDA_ALLOCATOR * (activations + trainable + frozen_weights)
        overhead_note = "CUDA context and allocator"
    else:
        overhead = CPU_BASELINE + CPU_ALLOCATOR * activations
        overhead_note = "Python, torch, tokenizer, data; allocator"
    if not s.sharded and s.ranks > 1:
        gradients *= 2  # DDP keeps its gradient buckets beside the gradients
    components = {"weights": int(frozen_weights), "trainable": int(trainable), "gradients": int(gradients),
                  "optimizer": int(optimizer), "activations": int(activations), "overhead": int(overhead)}
    # Gradients appear as the backward pass frees activations: only the output head's (first in
    # the backward pass) coincide with every activation.
    not_at_once = int(min(activations, max(0, gradients - head_grads)))
    peak, phase = sum(components.values()) - not_at_once, "training"
    reference = _reference_pass(s, frozen_weights + trainable) + overhead - CPU_ALLOCATOR * activations * (s.kind != "cuda")
    if reference > peak:
        peak, phase = int(reference), "reference pass"
    loading = _cpu_loading(s, frozen_weights + trainable)
    if loading > peak:
        peak, phase = int(loading), "loading"
    dtype_name = {2.0: "bf16", 4.0: "fp32", NF4_BYTES: "NF4 4-bit"}.get(s.frozen_bytes, "")
    notes.update({
        "weights": f"frozen, {dtype_name}" if frozen_weights else "nothing frozen",
        "trainable": f"{trained_params:,} parameters, {'bf16' if s.trained_bytes == 2 else 'fp32'}",
        "optimizer": "AdamW: 2 states a trained parameter",
        "gradients": "a gradient per trained parameter" + (", DDP buckets" if not s.sharded and s.ranks > 1 else ""),
        "overhead": overhead_note,
    })
    if s.sharded:
        notes["weights"] += f", sharded over {s.ranks} GPUs"
    ranks_here = s.ranks if s.kind != "cuda" else 1  # CPU ranks share the host's memory
    if ranks_here > 1:
        components = {name: value * ranks_here for name, value in components.items()}
        not_at_once, peak = not_at_once * ranks_here, peak * ranks_here
    device = _device_label(config.device, s.kind)
    return MemoryPlan(device=device, components=components, not_at_once=not_at_once, peak_bytes=int(peak),
                      capacity_bytes=None, notes=notes, devices=s.ranks, phase=phase)


def _weights(s: _Setup) -> tuple[int, int, int, int]:
    """``(trainable bytes, frozen bytes, LoRA parameters, trained parameters)``."""
    shape, config = s.shape, s.config
    linear = shape.layer_linear_params
    embedding = shape.embedding_params
    head = 0 if shape.tied else embedding
    small = shape.norm_params * (2 if config.weight_dtype == "bfloat16" else 4)
    if config.uses_lora:
        lora = shape.layers * sum(config.lora_rank * (a + b) for name, (a, b) in shape.linears().items()
                                  if name in s.targets)
        embed_bytes = 2 if s.frozen_bytes < 4 else 4  # qlora keeps embeddings and the head 16-bit
        frozen = shape.layers * linear * s.frozen_bytes + (embedding + head) * embed_bytes + small
        return lora * s.trained_bytes, int(frozen), lora, lora
    if config.method == "freeze":
        frozen_layers = shape.layers - s.trained_layers
        trained = s.trained_layers * linear + head + (2 * s.trained_layers + 1) * shape.hidden
        frozen_norms = 2 * frozen_layers * shape.hidden * (2 if config.weight_dtype == "bfloat16" else 4)
        frozen = (frozen_layers * linear + embedding) * s.frozen_bytes + frozen_norms
        return trained * s.trained_bytes, int(frozen), 0, trained
    everything = shape.total_params
    return everything * s.trained_bytes, 0, 0, everything


def _activations(s: _Setup, tokens: int, trained_params: int, lora_params: int) -> tuple[int, int, dict]:
    """Bytes kept for the backward pass at its start, the output head's gradient, and notes."""
    shape, config = s.shape, s.config
    d = s.compute_bytes
    h, i = shape.hidden, shape.intermediate
    per_layer = _layer_saved(s) * tokens
    if config.gradient_checkpointing:
        kept = s.trained_layers * h * 4 * tokens + per_layer  # each layer's input, and one layer recomputed
        how = "activation checkpointing"
    else:
        kept = s.trained_layers * per_layer
        how = "no activation checkpointing"
    loss_tokens = tokens  # every position may carry loss: the worst case (train_on_prompt, long replies)
    head_trained = not config.uses_lora and (config.method != "freeze" or not shape.tied)
    head_input = loss_tokens * h * d if head_trained else 0
    # The loss: fp32 logits, log-softmax kept for the backward pass, and their gradients at its start.
    logits = loss_tokens * shape.vocab * (12 + (d if d < 4 else 0))
    # Working memory of the layer being computed: its intermediate and gradient tensors.
    working = tokens * (4 * h + 2 * i) * 4
    total = kept + head_input + logits + working + tokens * h * 4  # the final norm's input
    head_grads = shape.embedding_params * s.trained_bytes if head_trained else 0
    rows = tokens // s.length
    longest = " (the longest example)" if s.length < config.max_length else ""
    note = f"{rows} × {s.length} tokens{longest}, {how}; logits and loss in fp32"
    return int(total), head_grads, {"activations": note}


def _layer_saved(s: _Setup) -> float:
    """Bytes one decoder layer keeps a token for its backward pass, without checkpointing."""
    shape, config = s.shape, s.config
    d = s.compute_bytes
    h, i = shape.hidden, shape.intermediate
    linears = shape.linears()
    full = not config.uses_lora  # full and the trained layers of freeze train every linear
    saved = 2 * h * 4  # the two RMSNorms keep their fp32 input
    if full:
        saved += 2 * h * 4  # ...and their normalised output, for the scale's gradient
    # Attention: rotated queries, keys and values (expanded to every head where a mask is
    # given), the output and its log-sum-exp.
    saved += (3 * h + shape.heads) * d
    saved += 3 * i * d  # MLP: gate (for SiLU), SiLU's output and up (for the product)
    dropout = 2 if config.lora_dropout > 0 else 1
    inputs = {"q_proj": "norm1", "k_proj": "norm1", "v_proj": "norm1", "o_proj": "attn",
              "gate_proj": "norm2", "up_proj": "norm2", "down_proj": "mlp"}
    shared = set()
    for name, (fan_in, _) in linears.items():
        if full:
            if inputs[name] not in shared and inputs[name] != "attn":  # attn output is already kept
                saved += fan_in * d
            shared.add(inputs[name])
        elif name in s.targets:
            # LoRA: dropout's mask and the dropped input (for A's gradient), A's output (for B's).
            saved += dropout * fan_in * d + config.lora_rank * d
    return saved


def _reference_pass(s: _Setup, weights: float) -> float:
    """DPO's reference pass (no gradients, eight pairs a batch): weights, one layer at a time, the logits."""
    if s.config.method != "dpo":
        return 0
    shape = s.shape
    tokens = 2 * REFERENCE_PAIRS * s.length
    return weights + tokens * (shape.vocab * (8 + s.compute_bytes) + (6 * shape.hidden + 3 * shape.intermediate) * 4)


def _cpu_loading(s: _Setup, weights: float) -> float:
    """The CPU's peak while loading a model whose files are in another dtype than its storage.

    transformers reads the checkpoint (its pages count as resident while mapped) and converts
    it, so a 16-bit run from fp32 files briefly holds both. Files already in the storage dtype
    are mapped without a copy and count only once training touches them. On a GPU the copy is
    host memory, not the device's.
    """
    if s.kind == "cuda" or not s.file_bytes or abs(s.file_bytes - weights) < 0.1 * weights:
        return 0
    return CPU_LOADING_BASELINE + s.file_bytes + weights


def _compute_bytes(config: TrainConfig, kind: str, shape: ModelShape) -> int:
    """2 where the run computes in bf16 (``cpu_speed.resolve_precision``'s rule), else 4."""
    if config.precision == "bf16":
        return 2
    if config.precision == "fp32":
        return 4
    if kind == "cuda":
        return 2 if _gpu_info(0).get("bf16", True) else 4
    return 2 if kind == "cpu" and shape.hidden >= 256 and "amx_bf16" in _cpu_flags() else 4


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


def longest_example_bound(dataset: Path) -> int:
    """At most how many tokens the longest example of ``dataset`` has, without a tokenizer.

    A byte-level tokenizer's token covers at least one byte of text, so an example's bytes
    plus its template's markup bound its tokens (loosely: English runs about four bytes a
    token). The Train form plans with it as fields change; :func:`create_run` measures the
    longest example with the tokenizer. Cached by file size and modification time.
    """
    path = Path(dataset)
    stat = path.stat()
    return _longest_bound(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _longest_bound(path: str, _size: int, _mtime: int) -> int:
    from tui_ft.engine.data import load_dataset, preference_examples, sft_examples

    data = load_dataset(path)
    if data.format == "preference":
        examples = [example for pair in data.records for example in preference_examples(pair)]
    else:
        examples = sft_examples(data)
    return max((_bytes(example) for example in examples), default=0)


def _bytes(example) -> int:
    text = example.input + "".join(str(m.get("content") or "") for m in example.messages)
    return len(text.encode()) + TEMPLATE_TOKENS * (len(example.messages) + 1)


TEMPLATE_TOKENS = 32  # a turn's markup in tokens at most (alpaca's headers, chat roles and separators)


def _characters(example) -> int:
    return len(example.input) + sum(len(str(m.get("content") or "")) + TURN_CHARACTERS for m in example.messages)


LENGTH_SAMPLE = 64
TURN_CHARACTERS = 16  # a turn's template markup, roughly, so many short turns outweigh one long one


# ----- devices and capacity ----------------------------------------------------------------------


def resolve_device_kind(device: str) -> str:
    """``cuda``, ``mps`` or ``cpu`` for a config's device, ``auto`` decided without torch."""
    if device != "auto":
        return device.split(":")[0]
    from tui_ft.engine.models.devices import visible_gpu_count

    if visible_gpu_count() > 0:
        return "cuda"
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"


def _device_label(device: str, kind: str) -> str:
    if kind == "cuda":
        return device if ":" in device else "cuda:0"
    return kind


def device_capacity(device: str, ranks: int = 1) -> int | None:
    """Free memory for a run on ``device``: the least free of its GPUs, or the available RAM.

    ``$TUI_FT_MEMORY_CAPACITY_BYTES`` wins when set. GPUs are asked through ``nvidia-smi`` (no
    CUDA context in this process); where that fails and torch is already loaded,
    ``torch.cuda.mem_get_info``. ``None`` when it cannot be told.
    """
    forced = os.environ.get(CAPACITY_ENV)
    if forced:
        try:
            return int(float(forced))
        except ValueError:
            pass
    kind = device.split(":")[0]
    if kind != "cuda":
        import psutil

        return int(psutil.virtual_memory().available)  # MemAvailable on Linux
    first = int(device.split(":")[1]) if ":" in device else 0
    free = [_gpu_info(index).get("free") for index in range(first, first + ranks)]
    if any(value is None for value in free):
        free = [_torch_free(index) for index in range(first, first + ranks)]
    return None if any(value is None for value in free) else min(free)


_GPU_INFO_TTL_S = 2.0  # the Train form plans at every key: one nvidia-smi call every few seconds is enough
_gpu_info_cache: dict[str, tuple[float, dict]] = {}


def _gpu_info(index: int) -> dict:
    """``free`` bytes and ``bf16`` (compute capability 8.0 and up) of visible GPU ``index`` from ``nvidia-smi``."""
    key = f"{os.environ.get('CUDA_VISIBLE_DEVICES')}/{index}"
    cached = _gpu_info_cache.get(key)
    if cached and time.monotonic() - cached[0] < _GPU_INFO_TTL_S:
        return cached[1]
    info = _ask_nvidia_smi(index)
    _gpu_info_cache[key] = (time.monotonic(), info)
    return info


def _ask_nvidia_smi(index: int) -> dict:
    command = shutil.which("nvidia-smi")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [entry.strip() for entry in visible.split(",")]
        if index >= len(entries) or not entries[index] or entries[index].startswith("-"):
            return {}
        selector = entries[index]
    else:
        selector = str(index)
    if not command:
        return {}
    try:
        line = subprocess.run([command, "-i", selector, "--query-gpu=memory.free,compute_cap",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=NVIDIA_SMI_TIMEOUT_S, check=True, stdin=subprocess.DEVNULL).stdout.strip()
        free, capability = (part.strip() for part in line.splitlines()[0].split(","))
        return {"free": int(float(free)) * 2**20, "bf16": float(capability) >= 8.0}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def _torch_free(index: int) -> int | None:
    torch = sys.modules.get("torch")  # only where torch is loaded already: never a context just to ask
    if torch is None or not torch.cuda.is_available():
        return None
    try:
        return int(torch.cuda.mem_get_info(index)[0])
    except RuntimeError:
        return None


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line for line in text.splitlines() if line.startswith("flags")), "")


# ----- refusing, and the fix ---------------------------------------------------------------------


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
