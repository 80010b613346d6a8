"""Checking a training config for forms and the CLI: :func:`validate_config` and the checks behind it.

:func:`validate_config` checks every field without loading model weights (it reads the
dataset, ``config.json`` and the tokenizer) and returns ``(field, message)`` pairs, so a form
can show each message beside its field and the CLI can print one line per problem. Value
checks are pure; file checks read the dataset, the model's ``config.json`` and its tokenizer,
never its weights.
"""

from __future__ import annotations

import math
from pathlib import Path

from tui_ft.engine.runs.config import (
    ALL_LINEAR,
    DPO_MODES,
    METHODS,
    PRECISIONS,
    REPORT_TARGETS,
    REWARD_MODES,
    RUN_NAME_PATTERN,
    SCHEDULERS,
    TEMPLATE_CHOICES,
    WEIGHT_DTYPES,
    TrainConfig,
)

Errors = list[tuple[str, str]]


def validate_config(config: TrainConfig, home: Path) -> list[tuple[str, str]]:
    """Check a config without loading model weights.

    Args:
        config: The config to check (``None`` fields take the method's defaults).
        home: The workspace holding ``datasets/`` and ``checkpoints/``; relative dataset paths
            are tried there as well as in the current folder.

    Returns:
        ``(field, message)`` pairs, empty when the config is good. Field names are
        :class:`TrainConfig` field names, so a form can put each message beside its input.
    """
    config = config.resolved()
    errors = check_values(config)
    if config.name is not None:
        # fullmatch: with match, "$" also matches before a final newline ("run\n" passed).
        if not RUN_NAME_PATTERN.fullmatch(config.name) or ".." in config.name:
            errors.append(("name", f"{config.name!r} is not a safe run name (letters, digits, '.', '_', '-'; 64 at most)"))
        elif (Path(home) / "checkpoints" / config.name).exists():
            errors.append(("name", f"a run named {config.name!r} already exists"))
    return errors + check_files(config, Path(home), skip={name for name, _ in errors})


def is_finite_positive(value: float) -> bool:
    """True for a finite number above zero."""
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_values(config: TrainConfig) -> Errors:
    """Range checks on the numbers and choices of a resolved config."""
    errors: Errors = []

    def need(ok: bool, name: str, message: str) -> None:
        if not ok:
            errors.append((name, f"{message}, got {getattr(config, name)!r}"))

    need(config.method in METHODS, "method", f"must be one of {', '.join(METHODS)}")
    need(is_finite_positive(config.lr), "lr", "must be a positive number")
    need(config.batch_size >= 1, "batch_size", "must be at least 1")
    need(config.grad_accum >= 1, "grad_accum", "must be at least 1")
    need(config.epochs >= 1, "epochs", "must be at least 1")
    need(config.max_steps is None or config.max_steps >= 1, "max_steps", "must be at least 1")
    need(config.max_length >= 16, "max_length", "must be at least 16")
    need(0 <= config.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
    need(config.scheduler in SCHEDULERS, "scheduler", f"must be one of {', '.join(SCHEDULERS)}")
    need(math.isfinite(config.weight_decay) and config.weight_decay >= 0, "weight_decay", "must be 0 or more")
    need(math.isfinite(config.max_grad_norm) and config.max_grad_norm >= 0, "max_grad_norm", "must be 0 (off) or more")
    need(config.lora_rank >= 1, "lora_rank", "must be at least 1")
    need(is_finite_positive(config.lora_alpha), "lora_alpha", "must be a positive number")
    need(0 <= config.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
    need(bool(config.lora_targets), "lora_targets", "must name at least one module")
    need(config.freeze_layers is None or config.freeze_layers >= 0, "freeze_layers", "must be 0 or more")
    need(0 <= config.eval_split <= 0.5, "eval_split", "must be in [0, 0.5]")
    need(config.eval_every >= 0, "eval_every", "must be 0 (automatic) or more")
    need(config.template is None or config.template in TEMPLATE_CHOICES, "template", "must be alpaca or chat")
    need(config.save_every >= 0, "save_every", "must be 0 (only on stop) or more")
    need(config.keep_checkpoints >= 1, "keep_checkpoints", "must be at least 1")
    need(config.seed >= 0, "seed", "must be 0 or more")
    need(config.nproc >= 1, "nproc", "must be at least 1")
    need(config.threads >= 0, "threads", "must be 0 (automatic) or more")
    errors += _check_processes(config)
    need(config.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
    need(is_finite_positive(config.beta), "beta", "must be a positive number")
    need(config.dpo_mode in DPO_MODES, "dpo_mode", "must be lora or full")
    need(config.reward_mode in REWARD_MODES, "reward_mode", "must be lora or full")
    need(config.weight_dtype in WEIGHT_DTYPES, "weight_dtype", f"must be one of {', '.join(WEIGHT_DTYPES)}")
    errors += _check_device(config.device)
    errors += _check_quantization(config)
    errors += _check_report_to(config.report_to)
    return errors


def _check_report_to(targets: list[str] | None) -> Errors:
    """Known trackers, each once; ``none`` (read as ``None``) stands alone."""
    if not targets or (set(targets) <= set(REPORT_TARGETS) and len(set(targets)) == len(targets)):
        return []
    return [("report_to", f"must be none, {', '.join(REPORT_TARGETS)} or both comma-separated "
                          f"({','.join(REPORT_TARGETS)}), got {','.join(targets)!r}")]


def _check_quantization(config: TrainConfig) -> Errors:
    """QLoRA's 4-bit layers come from bitsandbytes (the ``gpu`` extra), on CUDA or the CPU."""
    if config.method != "qlora":
        return []
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:  # found, not imported: importing it loads torch
        return [("method", "qlora needs bitsandbytes: pip install 'tui_ft[gpu]' (or pip install bitsandbytes)")]
    if config.device.split(":")[0] == "mps":
        return [("method", "qlora's 4-bit layers (bitsandbytes) do not run on MPS: use lora")]
    if config.weight_dtype == "float32":
        return [("weight_dtype", "qlora stores the base in 4 bits: leave weight_dtype at auto")]
    return []


def _check_processes(config: TrainConfig) -> Errors:
    """Several processes: the global batch splits evenly, and there are enough GPUs for them."""
    errors: Errors = []
    if config.fsdp and config.method != "full":
        errors.append(("fsdp", f"FSDP shards full fine-tuning only (method full), got method {config.method}"))
    if config.fsdp and config.nproc < 2:
        errors.append(("fsdp", "FSDP shards the model across processes: set nproc to 2 or more"))
    if config.nproc <= 1:
        return errors
    if config.batch_size % config.nproc:
        errors.append(("batch_size", f"the batch size is the global batch: it must be a multiple of nproc "
                                     f"({config.nproc}), got {config.batch_size}"))
    kind = config.device.split(":")[0]
    if ":" in config.device or kind == "mps":
        errors.append(("device", f"with nproc {config.nproc} each process takes its own GPU: use auto, cuda or cpu, "
                                 f"got {config.device!r}"))
    elif kind in ("auto", "cuda"):
        # Counted without torch: the dashboard checks a run before starting it, and importing
        # torch there stalled its keys for seconds.
        from tui_ft.engine.models.devices import visible_gpu_count

        count = visible_gpu_count()
        if count and config.nproc > count:
            errors.append(("nproc", f"this machine has {count} CUDA device(s), got nproc {config.nproc}"))
    return errors


def _check_device(device: str) -> Errors:
    if device in ("auto", "cpu"):
        return []
    kind = device.split(":")[0]
    if kind not in ("cuda", "mps"):
        return [("device", f"must be auto, cpu, cuda, cuda:N or mps, got {device!r}")]
    import torch

    if kind == "cuda" and not torch.cuda.is_available():
        return [("device", "CUDA is not available on this machine")]
    if kind == "cuda" and ":" in device:
        index = device.split(":", 1)[1]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            return [("device", f"{device}: this machine has {torch.cuda.device_count()} CUDA device(s)")]
    if kind == "mps" and not torch.backends.mps.is_available():
        return [("device", "MPS is not available on this machine")]
    return []


def find_dataset(ref: str, home: Path, download: bool = True) -> Path:
    """A dataset path as given, else relative to the workspace (``home``), else ``home/datasets``.

    ``hf:org/name[:split]`` is a Hub dataset: its file in the Hugging Face cache, downloaded
    unless ``download`` is false (the Train form plans as fields change: it never downloads).

    Raises:
        DatasetError: No such file in any of them; the one problem names the folders searched.
    """
    from tui_ft.engine.data.hub_datasets import fetch_dataset, is_hub_dataset
    from tui_ft.engine.data.readers import DatasetError, Problem

    if is_hub_dataset(ref):
        return fetch_dataset(ref, offline=not download)

    path = Path(ref).expanduser()
    if path.exists():
        return path
    if path.is_absolute():
        raise DatasetError([Problem(ref, 0, "no such file")])
    folders = [Path.cwd(), home, home / "datasets"]
    for candidate in (home / path, home / "datasets" / path):
        if candidate.exists():
            return candidate
    searched = list(dict.fromkeys(str(folder.resolve()) for folder in folders))  # the workspace may be the current folder
    raise DatasetError([Problem(ref, 0, f"no such file in {', '.join(searched[:-1])} or {searched[-1]}")])


def check_files(config: TrainConfig, home: Path, skip: set[str]) -> Errors:
    """Check the model reference, the datasets and what depends on them (template, lengths)."""
    errors = _check_datasets(config, home)
    model_errors, model_path, adapter = _check_model(config, home)
    errors += model_errors
    if model_path is None:
        return errors
    if adapter is not None and config.uses_lora:
        errors.append(("model", f"{config.model} is a LoRA run: export it merged (tui-ft export) and train on that folder"))
    errors += _check_model_code_and_modules(config, model_path, skip)
    model_config = _read_json(model_path / "config.json")
    limit = model_config.get("max_position_embeddings")
    if "max_length" not in skip and isinstance(limit, int) and config.max_length > limit:
        errors.append(("max_length", f"the model handles at most {limit} tokens, got {config.max_length}"))
    layers = model_config.get("num_hidden_layers")
    if config.method == "freeze" and config.freeze_layers is not None and isinstance(layers, int):
        if config.freeze_layers > layers:
            errors.append(("freeze_layers", f"the model has {layers} layers, got {config.freeze_layers}"))
    if config.template == "chat" and not _has_chat_template(model_path):
        errors.append(("template", "this model's tokenizer has no chat template; use alpaca"))
    return errors


def _check_model_code_and_modules(config: TrainConfig, model_path: Path, skip: set[str]) -> Errors:
    """A model that needs its own code (unless trusted); LoRA targets the model has (else peft fails in the worker)."""
    from tui_ft.engine.models import remote_code_problem, weight_names

    errors: Errors = []
    problem = None if config.trust_remote_code else remote_code_problem(model_path)
    if problem:
        errors.append(("model", problem))
    names = weight_names(model_path) if config.uses_lora and "lora_targets" not in skip else []
    # peft matches a target against the end of a module name; a weight is MODULE.weight.
    modules = {name.rsplit(".", 1)[0] for name in names}
    missing = [t for t in config.lora_targets if t != ALL_LINEAR and not any(m == t or m.endswith("." + t) for m in modules)]
    if names and missing:
        leaves = sorted({m.rsplit(".", 1)[-1] for m in modules if not m.rsplit(".", 1)[-1].isdigit()})
        errors.append(("lora_targets", f"this model has no module {missing[0]!r} (its modules: {', '.join(leaves)})"))
    return errors


def _check_datasets(config: TrainConfig, home: Path) -> Errors:
    from tui_ft.engine.data import load_dataset, training_refusal
    from tui_ft.engine.data.readers import DatasetError

    errors: Errors = []
    for name, ref in (("dataset", config.dataset), ("eval_dataset", config.eval_dataset)):
        if name == "eval_dataset" and not ref:
            continue
        if not ref:
            errors.append((name, "choose a dataset file"))
            continue
        try:
            dataset = load_dataset(find_dataset(ref, home))
        except DatasetError as error:
            first = error.problems[0]
            more = f" (and {len(error.problems) - 1} more problems)" if len(error.problems) > 1 else ""
            errors.append((name, f"{first}{more}"))
            continue
        refusal = training_refusal(config.method, dataset.format)
        if refusal:
            errors.append((name, refusal))
    return errors


def _check_model(config: TrainConfig, home: Path) -> tuple[Errors, Path | None, Path | None]:
    from tui_ft.engine.models import DEFAULT_REF, ModelError, gguf_path, is_model_folder, resolve_model

    if not config.model:
        return [("model", "choose a model")], None, None
    try:
        resolved = resolve_model(config.model, home, convert=False)
    except (ModelError, OSError, ValueError, KeyError) as error:
        return [("model", str(error))], None, None
    if config.model == DEFAULT_REF and not is_model_folder(resolved.path):
        try:
            gguf_path()  # converted on first use; only its source must exist now
        except ModelError as error:
            return [("model", str(error))], None, None
        return [], None, None
    return [], resolved.path, resolved.adapter


def _read_json(path: Path) -> dict:
    import orjson

    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}


def _has_chat_template(model_path: Path) -> bool:
    if (model_path / "chat_template.jinja").is_file():
        return True
    return bool(_read_json(model_path / "tokenizer_config.json").get("chat_template"))
