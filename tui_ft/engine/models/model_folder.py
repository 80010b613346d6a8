"""What a model folder holds, and whether tui-ft will load it.

A model folder is a ``config.json`` beside safetensors weights; a run folder holds its final
weights as ``model/`` (full, freeze) or ``adapter/`` (LoRA). Loading refuses pickles
(``adapter_model.bin``) and folders that ship their own Python code unless the user trusts it.
Nothing here imports torch; transformers only for a folder with ``auto_map``.
"""

from __future__ import annotations

from pathlib import Path

import orjson

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class ModelError(Exception):
    """A model reference that cannot be resolved or loaded; the message is one line for the user."""


def is_model_folder(path: Path) -> bool:
    """True for a folder with a ``config.json`` and safetensors weights."""
    return (path / "config.json").is_file() and any((path / f).is_file() for f in WEIGHT_FILES)


def has_final_weights(run_dir: Path) -> bool:
    """True when a run folder holds its final weights (``model/`` or ``adapter/``)."""
    return is_model_folder(run_dir / "model") or (run_dir / "adapter" / "adapter_config.json").is_file()


def check_adapter(folder: Path) -> Path:
    """``folder`` when it holds ``adapter_model.safetensors``; else :class:`ModelError`.

    peft falls back to ``adapter_model.bin``, a pickle, when the safetensors file is missing:
    tui-ft loads adapters from safetensors only (what it writes), so such a folder is refused.
    """
    if not (Path(folder) / ADAPTER_WEIGHTS).is_file():
        raise ModelError(f"{folder}: no {ADAPTER_WEIGHTS}; tui-ft loads adapters from safetensors only "
                         "(an adapter_model.bin is a pickle and is not loaded)")
    return Path(folder)


def remote_code_problem(path: Path) -> str | None:
    """One line refusing a model folder that needs its own Python code, or ``None``.

    Such a folder's ``config.json`` maps the Auto classes to modules it ships (``auto_map``) for a
    model type transformers does not know; loading it runs that code. A known model type with a
    leftover ``auto_map`` loads with transformers' own classes and is fine.
    """
    try:
        config = orjson.loads((Path(path) / "config.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(config, dict) or not config.get("auto_map"):
        return None
    # Imported only for such folders: it loads much of transformers (seconds).
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if config.get("model_type") in CONFIG_MAPPING_NAMES:
        return None
    return (f"{path}: this model ships its own Python code (auto_map in config.json), which tui-ft does not run "
            "unless you trust it (train: --set trust_remote_code=true)")


def model_code_problem(model_path: str | Path | None) -> str | None:
    """One line refusing a run whose base model ships its own Python code, or ``None``.

    ``model_path`` is what a ``run.json`` names as the run's base model (anything but a path
    reads as none). The file may come from someone else (a shared or downloaded run): neither
    its ``trust_remote_code`` nor the folder its ``model_path`` names is the user's consent, so
    that folder gets the check a new run's model gets. Only the current command's
    ``--trust-remote-code`` lifts the refusal.
    """
    if not isinstance(model_path, (str, Path)) or remote_code_problem(Path(model_path)) is None:
        return None
    return (f"{model_path}: the run's model ships its own Python code (auto_map in config.json), which tui-ft runs only "
            "when this command is given --trust-remote-code (runs resume, export); trust_remote_code in run.json "
            "is not enough")


def weight_names(path: Path) -> list[str]:
    """The weight names of a model folder, from its safetensors headers (no tensor is read).

    Hand-written (the format is an 8-byte header length, then a JSON header) because
    ``safetensors.safe_open`` needs torch, and validating a form must stay light. Returns an
    empty list when the headers cannot be read.
    """
    path = Path(path)
    try:
        index = path / "model.safetensors.index.json"
        if index.is_file():
            return sorted(orjson.loads(index.read_bytes()).get("weight_map", {}))
        with open(path / "model.safetensors", "rb") as file:
            size = int.from_bytes(file.read(8), "little")
            header = orjson.loads(file.read(min(size, 100_000_000)))
        return sorted(name for name in header if name != "__metadata__")
    except (OSError, ValueError, AttributeError, orjson.JSONDecodeError):
        return []
