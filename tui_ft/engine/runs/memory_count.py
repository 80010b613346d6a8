"""The count behind the memory plan: a run's bytes at its peak, by component, from ``config.json``.

:func:`count_memory` follows what the engine does with each tensor
(:mod:`tui_ft.engine.training.weight_storage`, ``training/sft.py``, ``training/dpo.py``):
under ``weight_dtype=auto`` frozen weights are 16-bit and trained ones and their AdamW state
fp32; qlora's linear layers are NF4 with double quantisation. The activations are counted
per tensor a Llama-shaped decoder layer saves for the backward pass, plus the output head's
logits and the loss in fp32. DPO's reference log-probabilities are computed once before
training, eight pairs at a time without gradients: no reference copy of the model is held,
but that pass can be the peak. The constants were fitted on measured peaks
(``bench/memory_plan.py``; the README has the table). Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from tui_ft.engine.runs.config import ALL_LINEAR, DEFAULT_LORA_TARGETS, TrainConfig
from tui_ft.engine.runs.device_memory import cpu_flags, device_label, gpu_info, resolve_device_kind

GB = 1e9
# What a process holds before any weight: Python, torch, transformers, peft, the tokenizer and
# the data (CPU); the CUDA context and cuBLAS workspace (GPU).
CPU_BASELINE = 0.6 * GB
CPU_LOADING_BASELINE = 0.4 * GB  # the same before the data is tokenized and anything is freed
CUDA_CONTEXT = 0.5 * GB
CUDA_ALLOCATOR = 0.05  # the caching allocator's slack, a share of the activations
# Freed memory glibc keeps, as a share of the activations the layers save (fitted on the CPU
# measurements in the README: 0.82 to 1.21 of the measured peaks).
CPU_RETAINED = 0.45
CPU_RETAINED_QLORA_RECOMPUTE = 1.25
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits, a uint8 absmax per 64 weights, an fp32 one per 256 absmax
REFERENCE_PAIRS = 8  # DPO's reference pass: pairs a batch (training/dpo.py, reference_logps)


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
        if self.not_at_once >= 0.01 * self.peak_bytes:  # worth a line only where gradients are large
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


def read_shape(model: Path | dict) -> ModelShape:
    """The model's shape from its folder's ``config.json`` (or the parsed dict)."""
    if isinstance(model, dict):
        values = model
    else:
        path = Path(model) / "config.json"
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read the model's config for the memory plan ({error})") from None
    try:
        return ModelShape.from_config(values)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError):
        raise ValueError("the model's config.json has no hidden_size, num_hidden_layers and vocab_size: "
                         "cannot plan its memory") from None


def count_memory(config: TrainConfig, shape: ModelShape, file_bytes: int = 0, longest: int | None = None) -> MemoryPlan:
    """The run's peak by component (``capacity_bytes`` left unknown).

    Args:
        config: A resolved config.
        shape: The model's dimensions.
        file_bytes: The size of its weight files (what loading on the CPU reads).
        longest: The longest example in tokens; ``None``: ``max_length``.
    """
    return _count(_setup(config, shape, file_bytes, longest))


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
    every_weight = config.trains_every_weight
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
    rows = math.ceil(config.batch_size / s.ranks) * (2 if config.method in ("dpo", "reward") else 1)  # a pair: two rows
    tokens = rows * s.length
    activations, head_grads, notes = _activations(s, tokens, trained_params, lora_params)
    if s.kind == "cuda":
        baseline = CUDA_CONTEXT
        overhead = baseline + CUDA_ALLOCATOR * activations
        overhead_note = "CUDA context; the caching allocator's slack"
    else:
        # glibc keeps much of what the layers free, fragmented among what stays allocated:
        # measured (bench/memory_plan.py), it grows with the activations the layers save, with
        # or without checkpointing, and more with bitsandbytes' 4-bit kernels recomputing.
        baseline = CPU_BASELINE
        kept = CPU_RETAINED * s.trained_layers * _layer_saved(s) * tokens
        if s.config.method == "qlora" and s.config.gradient_checkpointing:
            kept *= CPU_RETAINED_QLORA_RECOMPUTE
        overhead = baseline + kept + _mapped_file_pages(s, frozen_weights)
        overhead_note = "Python, torch, tokenizer, data; freed memory the C allocator keeps"
    if not s.sharded and s.ranks > 1:
        gradients *= 2  # DDP keeps its gradient buckets beside the gradients
    components = {"weights": int(frozen_weights), "trainable": int(trainable), "gradients": int(gradients),
                  "optimizer": int(optimizer), "activations": int(activations), "overhead": int(overhead)}
    # Gradients appear as the backward pass frees activations: only the output head's (first in
    # the backward pass) coincide with every activation.
    not_at_once = int(min(activations, max(0, gradients - head_grads)))
    peak, phase = sum(components.values()) - not_at_once, "training"
    reference = _reference_pass(s, frozen_weights + trainable) + baseline
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
    device = device_label(config.device, s.kind)
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
    if config.method == "qlora":
        # 4-bit layers (bitsandbytes) keep their input for the backward pass, frozen or not.
        saved += (2 * h + i) * d
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


def _mapped_file_pages(s: _Setup, frozen_weights: float) -> float:
    """The weight file's pages still mapped on the CPU beside the weights copied out of it.

    Frozen weights stored in the file's own dtype are used in place (memory-mapped): their
    file stays mapped, and the pages of the trained weights read from it (before they were
    copied to fp32) stay resident with it (freeze on a 16-bit checkpoint).
    """
    if s.kind == "cuda" or s.config.method != "freeze" or not s.file_bytes:
        return 0
    file_dtype_bytes = s.file_bytes / s.shape.total_params
    if abs(file_dtype_bytes - s.frozen_bytes) > 0.5:
        return 0  # the frozen weights were converted too: nothing stays mapped
    return max(0, s.file_bytes - frozen_weights)


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
        return 2 if gpu_info(0).get("bf16", True) else 4
    return 2 if kind == "cpu" and shape.hidden >= 256 and "amx_bf16" in cpu_flags() else 4
