"""The model a run trains: load the base, apply the method (full, freeze, LoRA), save the result."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from tui_ft.engine.models.devices import bf16_is_native
from tui_ft.engine.runs.config import ALL_LINEAR, TrainConfig
from tui_ft.engine.runs.record import RunRecord


@dataclass
class ParamCounts:
    """Parameter counts after the method is applied (shared weights counted once)."""

    total: int
    trainable: int

    @property
    def frozen(self) -> int:
        return self.total - self.trainable

    @property
    def trainable_pct(self) -> float:
        return 100.0 * self.trainable / max(1, self.total)

    def describe(self) -> str:
        return (f"Total parameters: {self.total:,}; trainable: {self.trainable:,}; frozen: {self.frozen:,}; "
                f"trainable: {self.trainable_pct:.2f}%")


def autocast_for(device: str, precision: str):
    """bf16 autocast on CUDA under ``auto`` (or wherever ``bf16`` is asked); fp32 otherwise."""
    kind = device.split(":")[0]
    if precision == "bf16" or (precision == "auto" and kind == "cuda"):
        return torch.autocast(kind, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def count_params(model) -> ParamCounts:
    params = list(model.parameters())  # parameters() yields a tied weight once
    return ParamCounts(sum(_numel(p) for p in params), sum(_numel(p) for p in params if p.requires_grad))


def _numel(param) -> int:
    """Weights a parameter holds: a 4-bit parameter packs two in a byte (its ``quant_state`` knows the shape)."""
    state = getattr(param, "quant_state", None)
    shape = getattr(state, "shape", None)
    return int(torch.Size(shape).numel()) if shape is not None else param.numel()


def decoder_layers(model):
    """The model's list of transformer blocks: the first ModuleList as long as the layer count."""
    count = getattr(model.config, "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ValueError("cannot find the transformer layers of this model to freeze")


def load_base(record: RunRecord, trust_remote_code: bool = False, dtype=torch.float32, quantization=None,
              device: str = "cpu"):
    """Load the run's base weights (a base adapter, if any, is merged in).

    Args:
        record: The run's ``run.json``.
        trust_remote_code: Run the model's own code: the current command's choice, never
            ``run.json``'s (see :func:`tui_ft.engine.models.model_folder.model_code_problem`).
        dtype: The weights' storage type (:func:`~tui_ft.engine.training.weight_storage.load_dtype`).
        quantization: A ``BitsAndBytesConfig`` (QLoRA); 4-bit weights are quantised while
            loading, straight onto ``device``.

    Raises:
        ModelError: The model ships its own code and ``trust_remote_code`` is off.
    """
    from transformers import AutoModelForCausalLM

    from tui_ft.engine.models import ModelError, model_code_problem

    problem = None if trust_remote_code else model_code_problem(record.model_path)
    if problem:
        raise ModelError(problem)
    if record.config.method == "reward":
        return load_reward_base(record, trust_remote_code, dtype, device)
    # Straight onto a GPU, shard by shard: a full host-RAM copy per rank (7B × 8 ranks in fp32
    # is 224 GB) is never made. 4-bit weights are quantised as they land on the device.
    placement = {"device_map": {"": device}} if quantization or device.split(":")[0] == "cuda" else {}
    if quantization:
        placement["quantization_config"] = quantization
    model = AutoModelForCausalLM.from_pretrained(
        str(record.model_path), dtype=dtype, local_files_only=True, trust_remote_code=trust_remote_code,
        use_safetensors=True,  # never unpickle a pytorch_model.bin that sits beside the safetensors
        **placement,
    )
    if record.base_adapter:
        if quantization:
            raise ModelError("qlora cannot start from a LoRA run: merge it first (tui-ft export --merged), "
                             "then train on the merged model")
        from peft import PeftModel

        from tui_ft.engine.models import check_adapter

        model = PeftModel.from_pretrained(model, check_adapter(record.base_adapter)).merge_and_unload()
    return model


def load_reward_base(record: RunRecord, trust_remote_code: bool = False, dtype=torch.float32, device: str = "cpu"):
    """The base model with a one-output head on its last token (``AutoModelForSequenceClassification``, ``num_labels=1``).

    The head (``score``) starts from random weights. ``pad_token_id`` is set in the model's
    config: transformers reads each row's reward at its rightmost token that is not padding.
    """
    from transformers import AutoModelForSequenceClassification

    from tui_ft.engine.models import load_tokenizer

    if record.base_adapter:
        from tui_ft.engine.models import ModelError

        raise ModelError("a reward model starts from a model, not from a LoRA run: merge that run first "
                         "(tui-ft export --merged), then train on the merged model")
    from transformers.utils import logging as hf_logging

    pad_id = load_tokenizer(record.model_path).pad_token_id
    placement = {"device_map": {"": device}} if device.split(":")[0] == "cuda" else {}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists score.weight as missing: new by design
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(record.model_path), num_labels=1, pad_token_id=pad_id, dtype=dtype, local_files_only=True,
            trust_remote_code=trust_remote_code, use_safetensors=True, **placement)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = pad_id
    return model


def apply_method(model, config: TrainConfig):
    """Set ``requires_grad`` for the method, or wrap the model with a LoRA adapter (peft)."""
    if config.uses_lora:
        from peft import LoraConfig, get_peft_model

        targets = config.lora_targets
        lora = LoraConfig(
            r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=ALL_LINEAR if ALL_LINEAR in targets else list(targets),
            # A reward model's head (transformers' "score") trains in full beside the adapter:
            # peft's SEQ_CLS task keeps it in modules_to_save, so the adapter folder carries it.
            task_type="SEQ_CLS" if config.method == "reward" else "CAUSAL_LM",
        )
        # peft makes the adapter fp32 on a 16-bit base unless asked not to; pure bf16 keeps it bf16.
        return get_peft_model(model, lora, autocast_adapter_dtype=config.weight_dtype != "bfloat16")
    for param in model.parameters():
        param.requires_grad = True
    if config.method == "freeze":
        layers = decoder_layers(model)
        frozen = len(layers) // 2 if config.freeze_layers is None else config.freeze_layers
        # The embeddings freeze too (as the seed's freeze_early_layers does); with tied
        # embeddings that freezes the output head as well.
        for param in model.get_input_embeddings().parameters():
            param.requires_grad = False
        for layer in layers[:frozen]:
            for param in layer.parameters():
                param.requires_grad = False
    return model


def build_model(record: RunRecord, device: str, trust_remote_code: bool = False, compute_device: str | None = None):
    """The base model with the run's method applied (``record.config``, its defaults filled in), on ``device``, ready to train.

    Weights are stored as :mod:`~tui_ft.engine.training.weight_storage` says: frozen ones in
    16 bits (4-bit NF4 for qlora), trained ones in fp32 under ``weight_dtype=auto``.
    ``compute_device`` is where the model will run when it is built elsewhere first (FSDP
    builds on the CPU); it decides fp16 against bf16. ``trust_remote_code`` is the current
    command's choice (see :func:`load_base`).
    """
    from tui_ft.engine.training import weight_storage as storage

    train_config = record.config.resolved()
    target = compute_device or device
    torch.manual_seed(train_config.seed)  # LoRA's initial A matrices come from the generator
    quantization = None
    if train_config.method == "qlora":
        compute = storage.half_dtype(target) if bf16_is_native(target) else torch.float32
        quantization = storage.quantization_config(compute)
    model = load_base(record, trust_remote_code, dtype=storage.load_dtype(train_config, target),
                      quantization=quantization, device=device)
    model.config.use_cache = False
    if train_config.weight_dtype != "bfloat16":
        storage.keep_small_weights_fp32(model)
    if train_config.gradient_checkpointing:
        storage.enable_checkpointing(model)
    model = apply_method(model, train_config)
    if train_config.weight_dtype != "bfloat16":
        storage.trained_weights_to_fp32(model)
    # 16-bit frozen weights meet fp32 inputs wherever the run computes in fp32 (outside autocast).
    storage.compute_in_fp32(model)
    return model if quantization else model.to(device)


def save_final(model, tokenizer, run_dir: Path, uses_lora: bool, state_dict: dict | None = None) -> Path:
    """Write ``adapter/`` (PEFT format) or ``model/`` (Hugging Face format with the tokenizer), atomically.

    ``state_dict`` replaces the model's own weights (FSDP: the gathered full weights).
    """
    target = Path(run_dir) / ("adapter" if uses_lora else "model")
    staging = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    # Every staging folder, not only ours: a worker killed mid-save left one named after its pid
    # (a whole model's worth of disk for full fine-tuning). One worker writes a run at a time.
    from tui_ft.engine.files import files_as_umask, remove_tree

    for leftover in Path(run_dir).glob(f".tmp-{target.name}-*"):
        remove_tree(leftover)  # a link planted under a staging name is removed itself, never written through
    if not uses_lora and state_dict is None and len({p.dtype for p in model.parameters()}) > 1:
        # freeze under weight_dtype=auto: frozen layers bf16, trained ones fp32. One dtype for
        # the whole folder (what every loader and converter expects); bf16 values are exact in fp32.
        model = model.float()
        model.config.dtype = torch.float32
    model.save_pretrained(staging, **({"state_dict": state_dict} if state_dict is not None else {}))
    if not uses_lora:
        model.config.use_cache = True
        model.config.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    files_as_umask(staging)
    remove_tree(target)  # a link in its place is removed itself, never followed
    os.replace(staging, target)
    return target
