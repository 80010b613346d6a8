"""Export a run's model, LoRA merged into the base weights: a Hugging Face folder, a GGUF file, an Ollama folder.

The GGUF and Ollama exports merge into a hidden folder beside their output with
:func:`export_merged`, write from it (:mod:`.gguf_export`, :mod:`.ollama`), then remove it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson

from tui_ft.engine.files import files_as_umask
from tui_ft.engine.models import check_adapter, fetch_run_weights, is_model_folder, load_tokenizer
from tui_ft.engine.runs import RunError, list_checkpoints
from tui_ft.engine.runs.folder import read_run_config
from tui_ft.engine.runs.record import RunRecord

EXPORT_INFO = "tui_ft_export.json"  # which run and template the folder came from


def export_merged(run_dir: Path, out_dir: Path, from_checkpoint: bool = False, trust_remote_code: bool = False) -> Path:
    """Write the run's weights as a standalone model folder that transformers loads.

    A LoRA run's adapter is merged into its base (peft ``merge_and_unload``); a full or freeze
    run's ``model/`` is copied. A run without final weights (stopped, died) is exported from
    its latest checkpoint. The folder also holds the tokenizer and ``tui_ft_export.json``
    naming the run and its template.

    Args:
        run_dir: The run folder.
        out_dir: The folder to create; it must not exist or be empty.
        from_checkpoint: Export the latest checkpoint even when final weights exist.
        trust_remote_code: Let the base model's own code run (``export --trust-remote-code``);
            the run's ``run.json`` saying so is not enough.

    Raises:
        RunError: When the run has no weights yet or ``out_dir`` is not empty.
        ModelError: The base model ships its own code and ``trust_remote_code`` is off, or
            ``run.json`` is not a run's record (no ``model_path``, a setting of the wrong type).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir).expanduser().resolve()
    if not read_run_config(run_dir):
        raise RunError(f"{run_dir}: not a run folder (no run.json)")
    record = RunRecord.read(run_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise RunError(f"{out_dir}: already exists and is not empty")
    staging = out_dir.with_name(f".tmp-{out_dir.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    source = _write_weights(run_dir, record, staging, from_checkpoint, trust_remote_code)
    load_tokenizer(record.model_path).save_pretrained(staging)
    info = {"run": run_dir.name, "source": source, "template": record.template, "method": record.config.method,
            "model": record.config.model}
    (staging / EXPORT_INFO).write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    files_as_umask(staging)
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(staging, out_dir)
    return out_dir


def export_gguf(run_dir: Path, out_file: Path, quant: str = "f16", from_checkpoint: bool = False,
                trust_remote_code: bool = False) -> Path:
    """Write the run's merged model as one GGUF file (tokenizer and chat template in its metadata).

    Args:
        run_dir: The run folder.
        out_file: The file to create; an existing file is never replaced.
        quant: ``f16``, ``bf16`` or ``q8_0`` (:data:`.gguf_export.QUANTS`).
        from_checkpoint, trust_remote_code: As for :func:`export_merged`.

    Raises:
        RunError: ``out_file`` exists, the quant is unknown, the model is not a Llama or its
            tokenizer is not byte-level BPE (all checked before any weight is merged), or as
            :func:`export_merged`.
    """
    from tui_ft.engine.training.gguf_export import write_gguf

    run_dir, out = Path(run_dir), Path(out_file).expanduser().resolve()
    check_gguf_export(run_dir, quant, from_checkpoint)
    if out.exists() or out.is_symlink():
        raise RunError(f"{out}: already exists")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    try:
        with _merged_folder(run_dir, out.parent, from_checkpoint, trust_remote_code) as merged:
            write_gguf(merged, staging, quant, run_dir.name)
        _publish_file(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    return out


def export_ollama(run_dir: Path, out_dir: Path, quant: str = "f16", from_checkpoint: bool = False,
                  trust_remote_code: bool = False) -> Path:
    """Write a folder for ``ollama create NAME -f OUT_DIR/Modelfile``: ``model.gguf`` and a ``Modelfile``.

    The Modelfile's TEMPLATE is the run's prompt format in Ollama's syntax (:mod:`.ollama`).

    Raises:
        RunError: ``out_dir`` is not new or empty, the prompt format has no Ollama template here,
            or as :func:`export_gguf`.
    """
    from tui_ft.engine.training.gguf_export import write_gguf
    from tui_ft.engine.training.ollama import GGUF_NAME, modelfile_text

    run_dir, out_dir = Path(run_dir), Path(out_dir).expanduser().resolve()
    record = check_gguf_export(run_dir, quant, from_checkpoint)
    name = run_dir.name
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise RunError(f"{out_dir}: already exists and is not empty")
    modelfile = modelfile_text(load_tokenizer(record.model_path), record.template, name)  # refused before merging
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".tmp-{out_dir.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with _merged_folder(run_dir, out_dir.parent, from_checkpoint, trust_remote_code) as merged:
            write_gguf(merged, staging / GGUF_NAME, quant, name)
        (staging / "Modelfile").write_text(modelfile)
        files_as_umask(staging)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def check_gguf_export(run_dir: Path, quant: str, from_checkpoint: bool) -> RunRecord:
    """The run's record, once everything a GGUF export can refuse before merging has been checked.

    Only ``config.json`` and the tokenizer are read: for a Hub model, what ``create_run`` fetched,
    so ``export`` refuses before it downloads the weights.
    """
    from tui_ft.engine.training.gguf_export import QUANTS, check_llama
    from tui_ft.engine.training.gguf_vocab import bpe_pre_tokenizer

    if quant not in QUANTS:
        raise RunError(f"--quant {quant}: expected one of {', '.join(QUANTS)}")
    if not read_run_config(run_dir):
        raise RunError(f"{run_dir}: not a run folder (no run.json)")
    record = RunRecord.read(run_dir)
    name = run_dir.name
    if record.config.method == "reward":
        raise RunError(f"{name}: a reward model scores replies; GGUF and Ollama are for models that chat "
                       "(export --merged writes it as a sequence-classification folder)")
    full_weights = not from_checkpoint and is_model_folder(run_dir / "model")
    check_llama(run_dir / "model" if full_weights else record.model_path, name)
    bpe_pre_tokenizer(record.model_path, name)  # the export's tokenizer is the base model's
    return record


@contextlib.contextmanager
def _merged_folder(run_dir: Path, beside: Path, from_checkpoint: bool, trust_remote_code: bool) -> Iterator[Path]:
    """The run's merged model in a hidden folder in ``beside`` (the output's filesystem, not a small /tmp), removed after."""
    folder = beside / f".tmp-{run_dir.name}-merged-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        yield export_merged(run_dir, folder, from_checkpoint=from_checkpoint, trust_remote_code=trust_remote_code)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _publish_file(staging: Path, out: Path) -> None:
    """Give the finished ``staging`` file its name ``out``, refusing (never replacing) a file that appeared meanwhile."""
    try:
        os.link(staging, out)  # unlike a rename, a link fails when out exists
    except FileExistsError:
        raise RunError(f"{out}: already exists") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV) or out.exists():
            raise
        os.replace(staging, out)  # a filesystem without hard links: the check above is the guard


def merge_dtype(record: RunRecord):
    """The dtype an adapter is merged in: the base's storage during training (fp32 for runs that predate weight_dtype)."""
    import torch

    return torch.float32 if record.config.weight_dtype == "float32" else torch.bfloat16


def _write_weights(run_dir: Path, record: RunRecord, staging: Path, from_checkpoint: bool, trust_remote_code: bool) -> str:
    """Save merged weights into ``staging``; returns what they came from."""
    from transformers.utils import logging as hf_logging

    from tui_ft.engine.training.methods import build_model, load_base

    hf_logging.disable_progress_bar()  # the caller shows its own progress

    if not from_checkpoint and is_model_folder(run_dir / "model"):
        shutil.copytree(run_dir / "model", staging)
        return "model"
    # What follows merges into the base: a Hub model's weights may not be here yet (a run stopped
    # before its worker fetched them, or a cache cleaned since); the caller's display shows them coming.
    fetch_run_weights(record.to_json())  # the models layer reads run.json's keys (it sits below runs)
    if not from_checkpoint and (run_dir / "adapter" / "adapter_config.json").is_file():
        from peft import PeftModel

        adapter = check_adapter(run_dir / "adapter")  # safetensors only, never adapter_model.bin
        # Into the base as the run stored it (bf16 under weight_dtype=auto; runs from before
        # weight_dtype existed trained on fp32), never into 4-bit weights: a qlora adapter
        # merges into the 16-bit base, not into dequantised-then-requantised weights.
        model = PeftModel.from_pretrained(load_base(record, trust_remote_code, dtype=merge_dtype(record)),
                                          adapter).merge_and_unload()
        source = "adapter"
    else:
        checkpoints = list_checkpoints(run_dir)
        if not checkpoints:
            raise RunError(f"{run_dir.name} has no weights to export yet (no adapter/, model/ or checkpoint)")
        from tui_ft.engine.training.checkpoint import load_trainable

        # A qlora checkpoint's adapter goes onto the 16-bit base, like a finished qlora run's.
        if record.config.method == "qlora":
            record = dataclasses.replace(record, config=dataclasses.replace(record.config, method="lora"))
        model = build_model(record, "cpu", trust_remote_code)
        load_trainable(model, checkpoints[-1])
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload().to(merge_dtype(record))  # as the adapter branch above
        elif len({param.dtype for param in model.parameters()}) > 1:
            model = model.float()  # freeze under auto: bf16 frozen layers, fp32 trained ones (see save_final)
        source = f"ckpt/{checkpoints[-1].name}"
    model.config.use_cache = True
    model.save_pretrained(staging)
    return source
