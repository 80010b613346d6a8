"""The model being evaluated: resolved at once, its weights loaded only when a score is computed.

A :class:`ModelSession` knows everything a stored result is keyed by (identity, template,
weights stamp, where results go) without loading weights, so a cached result costs no model
load. A checkpoint (``step-N``) of a run is its base model plus the trainable weights saved in
``checkpoints/<run>/ckpt/step-N/`` (see :func:`load_checkpoint_weights`).
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from tui_ft.engine import eval_store
from tui_ft.engine.models import ModelError, ModelRef, load_model, load_tokenizer, resolve_model
from tui_ft.engine.templates import TEMPLATES, default_template

CHECKPOINT_PATTERN = re.compile(r"^step-\d+$")


def find_run_dir(ref: str, home: Path) -> Path | None:
    """The run folder a reference names (a run name in ``checkpoints/`` or a run folder path)."""
    for candidate in (Path(home) / "checkpoints" / ref, Path(ref).expanduser()):
        if (candidate / "run.json").is_file():
            return candidate.resolve()
    return None


def list_checkpoints(run_dir: Path) -> list[str]:
    """A run's intermediate checkpoints (``step-N``), in step order."""
    folder = Path(run_dir) / "ckpt"
    names = [p.name for p in folder.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)] if folder.is_dir() else []
    return sorted(names, key=lambda name: int(name.split("-")[1]))


def preferred_device() -> str:
    """CUDA when there is a GPU, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelSession:
    """One model (optionally a run's checkpoint) to evaluate, loaded lazily and at most once.

    Args:
        ref: A model reference, as the user gave it.
        home: The workspace.
        checkpoint: ``"step-N"`` of a run, or ``None`` for the final weights.

    Raises:
        ModelError: The reference or checkpoint does not exist.
    """

    def __init__(self, ref: str, home: Path, checkpoint: str | None = None):
        self.ref, self.home, self.checkpoint = ref, Path(home), checkpoint
        self.run_dir = find_run_dir(ref, self.home)
        self._model = self._tokenizer = None
        if checkpoint is None:
            self.resolved = resolve_model(ref, self.home)
            self.checkpoint_dir = None
            return
        if not CHECKPOINT_PATTERN.match(checkpoint):
            raise ModelError(f"{checkpoint}: a checkpoint is named step-N (for example step-100)")
        if self.run_dir is None:
            raise ModelError(f"{ref}: --checkpoint needs a run (checkpoints/<run>), not a model")
        self.checkpoint_dir = self.run_dir / "ckpt" / checkpoint
        if not self.checkpoint_dir.is_dir():
            known = ", ".join(list_checkpoints(self.run_dir)) or "none yet"
            raise ModelError(f"{ref}: no checkpoint {checkpoint} (available: {known})")
        config = orjson.loads((self.run_dir / "run.json").read_bytes())
        # The checkpoint's weights go on the run's base model, which exists before the run ends.
        base = resolve_model(config["model"], self.home) if config.get("model") else None
        base_path = base.path if base is not None else Path(config["model_path"])
        self.resolved = ModelRef(ref, base_path, "run", None, config.get("template"))

    @property
    def identity(self) -> str:
        """What the weights are, stably: a run's folder, else the model folder (and adapter)."""
        if self.run_dir is not None:
            return f"run:{self.run_dir}"
        adapter = f"+{self.resolved.adapter}" if self.resolved.adapter else ""
        return f"{self.resolved.kind}:{self.resolved.path}{adapter}"

    @property
    def results_dir(self) -> Path:
        """Where this model's results are stored."""
        return eval_store.results_dir(self.resolved, self.home, self.run_dir)

    def weights_stamp(self) -> list:
        """Size and time of the weight files, so changed weights are evaluated again."""
        folders = [self.checkpoint_dir] if self.checkpoint_dir else [self.resolved.adapter or self.resolved.path]
        return [item for folder in folders for item in eval_store.weights_stamp(folder)]

    def tokenizer(self):
        """The tokenizer, loaded alone (cheap) when the model is not loaded."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.resolved.path)
        return self._tokenizer

    def template(self, override: str | None = None) -> str:
        """``override``, else the run's template, else the model's own (chat when it has one)."""
        template = override or self.resolved.template or default_template(self.tokenizer())
        if template not in TEMPLATES:
            raise ModelError(f"unknown template {template!r} (expected alpaca or chat)")
        return template

    def load(self):
        """Load and return ``(model, tokenizer)`` in eval mode (once)."""
        if self._model is None:
            self._model, self._tokenizer = load_model(self.resolved, device=preferred_device())
            if self.checkpoint_dir is not None:
                self._model = load_checkpoint_weights(self._model, self.checkpoint_dir).eval()
        return self._model, self._tokenizer

    def release(self) -> None:
        """Drop the loaded weights so the next model does not share memory with them."""
        self._model = None


def load_checkpoint_weights(model, checkpoint_dir: Path):
    """Put a training checkpoint's trainable weights onto the base ``model``.

    Raises:
        ModelError: Checkpoint loading is not available for this run format.
    """
    raise ModelError(f"{checkpoint_dir}: evaluating intermediate checkpoints is not supported yet")
