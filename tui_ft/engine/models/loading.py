"""Load a resolved model reference: its tokenizer, its weights, and a run's LoRA adapter."""

from __future__ import annotations

from pathlib import Path

from tui_ft.engine.models.model_folder import ModelError, check_adapter, remote_code_problem
from tui_ft.engine.models.references import ModelRef


def load_tokenizer(path: Path, trust_remote_code: bool = False):
    """Load a tokenizer from a local folder; it gets a pad token when it has none.

    ``trust_remote_code`` is passed explicitly: left unset, transformers asks on stdin whether to
    run a model's own code (a prompt that hangs a dashboard or a detached worker).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(resolved: ModelRef, dtype=None, device: str = "cpu", trust_remote_code: bool = False):
    """Load a resolved reference as ``(model, tokenizer)``; a run's adapter is attached with peft."""
    import torch
    from transformers import AutoModelForCausalLM

    problem = None if trust_remote_code else remote_code_problem(resolved.path)
    if problem:
        raise ModelError(problem)
    if resolved.adapter is not None:
        check_adapter(resolved.adapter)  # before the base weights load: a refusal comes at once
    tokenizer = load_tokenizer(resolved.path)
    model = AutoModelForCausalLM.from_pretrained(
        resolved.path, dtype=dtype or torch.float32, local_files_only=True, trust_remote_code=trust_remote_code,
        use_safetensors=True,  # never unpickle a pytorch_model.bin that sits beside the safetensors
    )
    if resolved.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, resolved.adapter)
    return model.to(device).eval(), tokenizer
