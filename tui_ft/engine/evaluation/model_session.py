"""The model being evaluated: resolved at once, its weights loaded only when a score is computed.

A :class:`ModelSession` knows everything a stored result is keyed by (identity, template,
weights stamp, where results go) without loading weights, so a cached result costs no model
load. A checkpoint (``step-N``) of a run is its base model plus the trainable weights saved in
``checkpoints/<run>/ckpt/step-N/``: the run's model is rebuilt as training built it (base
weights, then the method: a LoRA wrapper or none) and the checkpoint's trainable weights are
copied in, with the training code's own functions.
"""

from __future__ import annotations

import re
from pathlib import Path

from tui_ft.engine.data.templates import TEMPLATES, default_template
from tui_ft.engine.evaluation import store
from tui_ft.engine.models import ModelError, ModelRef, load_model, load_tokenizer, resolve_model
from tui_ft.engine.models.devices import inference_device
from tui_ft.engine.runs.folder import list_checkpoints
from tui_ft.engine.runs.memory_plan import check_loading
from tui_ft.engine.runs.record import RunRecord
from tui_ft.engine.workspace import find_run_dir

CHECKPOINT_PATTERN = re.compile(r"^step-\d+$")  # the user's spelling; runs.folder lists the folders


def evaluation_dtype(device: str):
    """bf16 on a GPU with native bf16 (fp16 on older ones), with TF32 matmuls; fp32 on CPUs.

    CPU scores stay fp32: they are what the suite and the README's numbers were measured in,
    and a CPU without AMX computes bf16 no faster.
    """
    import torch

    if not device.startswith("cuda"):
        return torch.float32
    from tui_ft.engine.models.devices import bf16_is_native

    torch.backends.cuda.matmul.allow_tf32 = True
    return torch.bfloat16 if bf16_is_native(device) else torch.float16


class ModelSession:
    """One model (optionally a run's checkpoint) to evaluate, loaded lazily and at most once.

    Args:
        ref: A model reference, as the user gave it.
        home: The workspace.
        checkpoint: ``"step-N"`` of a run, or ``None`` for the final weights.

    Raises:
        ModelError: The reference or checkpoint does not exist, or the run's ``run.json`` is not
            a run's record (one line).
    """

    def __init__(self, ref: str, home: Path, checkpoint: str | None = None):
        self.ref, self.home, self.checkpoint = ref, Path(home), checkpoint
        run_dir = find_run_dir(ref, self.home)
        self.run_dir = run_dir.resolve() if run_dir is not None else None
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
            known = ", ".join(path.name for path in list_checkpoints(self.run_dir)) or "none yet"
            raise ModelError(f"{ref}: no checkpoint {checkpoint} (available: {known})")
        self.record = RunRecord.read(self.run_dir)
        from tui_ft.engine.models import model_code_problem

        # run.json's trust_remote_code is not the user's consent: a base model with its own code is
        # refused here, before anything loads, as a new run's would be.
        problem = model_code_problem(self.record.model_path)
        if problem:
            raise ModelError(problem)
        # The checkpoint's weights go on the run's base model, which exists before the run ends.
        self.resolved = ModelRef(ref, self.record.model_path, "run", None, self.record.template)

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
        return store.results_dir(self.resolved, self.home, self.run_dir)

    def weights_stamp(self) -> list:
        """Size and time of the weight files, so changed weights are evaluated again."""
        folders = [self.checkpoint_dir] if self.checkpoint_dir else [self.resolved.adapter or self.resolved.path]
        return [item for folder in folders for item in store.weights_stamp(folder)]

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
            device = inference_device()
            if self.checkpoint_dir is None:
                dtype = evaluation_dtype(device)
                check_loading(self.ref, self.resolved.path, device, dtype.itemsize)  # refused before loading
                self._model, self._tokenizer = load_model(self.resolved, dtype=dtype, device=device)
            else:
                self._model = load_checkpoint_model(self.record, self.checkpoint_dir, device)
                self._tokenizer = self.tokenizer()
        return self._model, self._tokenizer

    def release(self) -> None:
        """Drop the loaded weights so the next model does not share memory with them."""
        self._model = None


def load_checkpoint_model(record: RunRecord, checkpoint_dir: Path, device: str):
    """The run's model as training built it, with a checkpoint's trainable weights, in eval mode.

    Args:
        record: The run's ``run.json``.
        checkpoint_dir: ``ckpt/step-N`` (its ``trainable.safetensors`` holds the trained weights).
        device: Where to put the model.

    Raises:
        ModelError: The checkpoint does not fit the run's model.
    """
    from tui_ft.engine.training.checkpoint import load_trainable
    from tui_ft.engine.training.methods import build_model
    model = build_model(record, device)  # never trusts the model's own code (run.json's flag is not consent)
    try:
        load_trainable(model, checkpoint_dir)
    except (RuntimeError, OSError) as error:
        raise ModelError(f"{checkpoint_dir}: cannot load the checkpoint: {error}") from None
    model.config.use_cache = True  # training turned the KV cache off; generation wants it
    return model.eval()
