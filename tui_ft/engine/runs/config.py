"""Training configuration: the fields, their types and per-method defaults.

:class:`TrainConfig` is what ``run.json`` stores (plus the resolved ``model_path``,
``template`` and versions: :class:`~tui_ft.engine.runs.record.RunRecord` reads and writes the
whole file). Checking a config is :mod:`tui_ft.engine.runs.config_checks`'s
(:func:`~tui_ft.engine.runs.config_checks.validate_config`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

METHODS = ("lora", "qlora", "full", "freeze", "dpo", "reward")
SCHEDULERS = ("cosine", "linear", "constant")
TEMPLATE_CHOICES = ("alpaca", "chat")
PRECISIONS = ("auto", "fp32", "bf16")
WEIGHT_DTYPES = ("auto", "float32", "bfloat16")
DPO_MODES = ("lora", "full")
REWARD_MODES = DPO_MODES  # a reward model's body: a LoRA adapter (its head trained in full) or every weight
# Experiment trackers a run also reports to (training/trackers.py); report_to=none: neither.
REPORT_TARGETS = ("tensorboard", "wandb")
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR = "all-linear"  # peft's name for every linear layer but the output head (QLoRA's default)
# A run name becomes a folder under checkpoints/: no separators, no leading dot, no "..".
RUN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ConfigError(ValueError):
    """A configuration refused before any run folder exists.

    Attributes:
        errors: ``(field, message)`` pairs, as :func:`validate_config` returns them.
    """

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors))


@dataclass
class TrainConfig:
    """Everything a run needs; stored in ``run.json``.

    ``None`` for ``lr``, ``weight_decay``, ``lora_targets`` or ``freeze_layers`` means "the method's default"
    (see :func:`method_defaults`); :meth:`resolved` fills them in.
    """

    model: str = "default"
    dataset: str = ""
    method: str = "lora"
    name: str | None = None
    epochs: int = 3
    max_steps: int | None = None  # when set, wins over epochs (the data cycles)
    lr: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    weight_decay: float | None = None
    max_grad_norm: float = 1.0  # 0 disables clipping
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_targets: list[str] | None = None  # None: q/k/v/o projections (LoRA, DPO), every linear layer (QLoRA)
    freeze_layers: int | None = None  # None: half of the model's layers
    eval_dataset: str | None = None
    eval_split: float = 0.1  # fraction held out when there is no eval_dataset (at most 200)
    eval_every: int = 0  # 0: about five evaluations over the run
    template: str | None = None  # None: the model's default template, recorded at creation
    train_on_prompt: bool = False
    save_every: int = 100  # 0: checkpoints only on stop
    keep_checkpoints: int = 2
    # Trackers beside metrics.jsonl: tensorboard, wandb or both (--set report_to=tensorboard,wandb); None: neither.
    report_to: list[str] | None = None
    seed: int = 42
    nproc: int = 1  # processes under torchrun (GPUs); batch_size stays the global batch
    fsdp: bool = False  # full method, nproc > 1: shard weights, gradients and optimizer state (FSDP2)
    device: str = "auto"
    threads: int = 0  # CPU threads for torch; 0: torch's default (one per core)
    precision: str = "auto"  # auto: bf16 autocast on CUDA and AMX CPUs (cpu_speed.resolve_precision), else fp32
    # How weights are stored. auto: frozen weights in bf16 (fp16 on a GPU without bf16), trained
    # ones and the optimizer state in fp32; float32: every weight fp32; bfloat16: every weight
    # bf16, the trained ones too ("pure bf16", full fine-tuning without fp32 master weights).
    weight_dtype: str = "auto"
    gradient_checkpointing: bool = False  # recompute each layer's activations in the backward pass
    ignore_memory_plan: bool = False  # start even when the memory plan says the run will not fit
    beta: float = 0.1  # DPO temperature
    dpo_mode: str = "lora"  # DPO trains a LoRA adapter or the full model
    reward_mode: str = "lora"  # a reward model trains a LoRA adapter on the body (and its head), or every weight
    trust_remote_code: bool = False

    @classmethod
    def from_run(cls, run_config: dict) -> TrainConfig:
        """The config a ``run.json`` records; what ``create_run`` added beside it (``model_path``,
        ``base_adapter``, ``created``, ``versions``) is left out.

        Raises:
            ConfigError: A recorded value cannot be read as its field's type.
        """
        values = {key: value for key, value in run_config.items() if key in cls.__dataclass_fields__}
        # A run created before weight_dtype existed trained on fp32 weights: resume it the same way.
        values.setdefault("weight_dtype", "float32")
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build a config from a dict (``run.json``, a form, ``--set`` pairs).

        Unknown keys raise :class:`ConfigError`; strings are converted to the field's type, so
        ``{"lr": "1e-4", "lora_targets": "q_proj,v_proj"}`` works.
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError([(name, "unknown setting") for name in unknown])
        converted, errors = {}, []
        for key, value in values.items():
            try:
                converted[key] = _convert(known[key], value)
            except (TypeError, ValueError):
                errors.append((key, f"cannot read {value!r} as {_type_name(known[key])}"))
        if errors:
            raise ConfigError(errors)
        return cls(**converted)

    def to_dict(self) -> dict:
        """The config as a JSON-ready dict (the inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    def resolved(self) -> TrainConfig:
        """A copy with the method defaults filled in where a field is ``None``."""
        defaults = method_defaults(self.method, self.mode)
        changes = {k: v for k, v in defaults.items() if getattr(self, k, 0) is None}
        return dataclasses.replace(self, **changes)

    @property
    def mode(self) -> str:
        """``lora`` or ``full`` for DPO (``dpo_mode``) and reward models (``reward_mode``); ``""`` for other methods."""
        return {"dpo": self.dpo_mode, "reward": self.reward_mode}.get(self.method, "")

    @property
    def uses_lora(self) -> bool:
        """True when the run trains a LoRA adapter (lora, qlora, or DPO or a reward model in LoRA mode)."""
        return self.method in ("lora", "qlora") or (self.method in ("dpo", "reward") and self.mode == "lora")

    @property
    def trains_every_weight(self) -> bool:
        """Full fine-tuning, full DPO and a full reward model: nothing is frozen."""
        return self.method == "full" or (self.method in ("dpo", "reward") and self.mode == "full")


def method_defaults(method: str, mode: str = "lora") -> dict:
    """Sensible per-method values for a form to show when the method changes.

    LoRA trains few parameters and tolerates a high learning rate; full fine-tuning needs a
    low one. DPO through a LoRA adapter took 5e-4 to learn the shipped preference pairs
    (``dpo_concise.jsonl``, default model: held-out reward accuracy 1.0 after 12 steps of 4
    pairs; at 5e-5 it stayed at chance). Full DPO moves every weight and learned the same pairs
    at 5e-6 (held-out accuracy 1.0, margin 0.87 after 12 steps). ``mode`` is the DPO or reward
    model's ``lora`` or ``full``.
    """
    table = {
        "lora": {"lr": 2e-4, "weight_decay": 0.0, "epochs": 3},
        "qlora": {"lr": 2e-4, "weight_decay": 0.0, "epochs": 3},
        "full": {"lr": 2e-5, "weight_decay": 0.01, "epochs": 3},
        "freeze": {"lr": 5e-5, "weight_decay": 0.01, "epochs": 3},
        "dpo": {"lr": 5e-4 if mode == "lora" else 5e-6, "weight_decay": 0.0, "epochs": 3, "beta": 0.1},
        # A LoRA body and a new scalar head (reward.py), or every weight; measured on
        # dpo_concise.jsonl: see README.
        "reward": {"lr": 2e-4 if mode == "lora" else 1e-5, "weight_decay": 0.0, "epochs": 3},
    }
    targets = [ALL_LINEAR] if method == "qlora" else list(DEFAULT_LORA_TARGETS)
    return dict(table.get(method, table["lora"]), lora_targets=targets)


def _type_name(spec: dataclasses.Field) -> str:
    return str(spec.type).replace(" | None", "").replace("list[str]", "a comma-separated list")


def _convert(spec: dataclasses.Field, value):
    """Convert ``value`` to the field's declared type (the annotation is a string here)."""
    kind = str(spec.type)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null") and "None" in kind):
        if "None" in kind:
            return None
        raise ValueError("required")
    if kind.startswith("list"):
        items = value.split(",") if isinstance(value, str) else list(value)
        return [str(item).strip() for item in items if str(item).strip()]
    if kind.startswith("bool"):
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return lowered in ("true", "1", "yes")
        return bool(value)
    if kind.startswith("int"):
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, bool) or float(number) != int(number):
            raise ValueError(value)
        return int(number)
    if kind.startswith("float"):
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    return str(value)
