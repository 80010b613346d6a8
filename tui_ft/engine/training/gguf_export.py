"""A Llama-architecture Hugging Face model folder as one GGUF file, for llama.cpp and Ollama.

Written with the ``gguf`` package (the writer llama.cpp's own converter uses), following
``convert_hf_to_gguf.py``'s Llama conventions: tensor names from ``gguf.TensorNameMap``, the q and
k projections permuted into the rotary layout llama.cpp computes with, norms and other vectors in
F32, ``general.*`` and ``llama.*`` keys, and the tokenizer (:mod:`.gguf_vocab`). No llama.cpp build
is needed. Tensors are streamed: one tensor in memory at a time, whatever the model's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import orjson

from tui_ft.engine.runs import RunError
from tui_ft.engine.training.gguf_vocab import add_tokenizer

QUANTS = ("f16", "bf16", "q8_0")  # --quant: what matrices are stored as (vectors stay F32)
LLAMA_ARCHITECTURES = ("LlamaForCausalLM",)
ROPE_TYPES = ("default", "linear", "llama3")
STORED_AS = {"F32": "float32", "F16": "float16"}  # numpy's type for the GGUF types numpy has


def architecture(config: dict) -> str:
    """The architecture a ``config.json`` names (its class, else its ``model_type``)."""
    names = config.get("architectures") or []
    return str(names[0] if names else config.get("model_type") or "unknown")


def check_llama(folder: Path, name: str) -> None:
    """Refuse, in one line, a model folder this export cannot write: another architecture, an unknown RoPE.

    Raises:
        RunError: Naming the run and what the model is.
    """
    try:
        config = orjson.loads((Path(folder) / "config.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        raise RunError(f"{name}: GGUF export needs the model's config.json, which {folder} lacks") from None
    arch = architecture(config)
    if arch not in LLAMA_ARCHITECTURES:
        raise RunError(f"{name}: GGUF export supports Llama-architecture models; this one is {arch}")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type not in ROPE_TYPES:
        raise RunError(f"{name}: GGUF export supports plain, linear and llama3 RoPE; this model uses {rope_type}")


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor of the file: where it comes from, its GGUF name, and how it is stored."""

    source: str  # the safetensors name ("" for a tensor computed here)
    shard: Path | None  # the safetensors file holding it
    name: str
    shape: tuple[int, ...]
    qtype: object  # gguf.GGMLQuantizationType


def write_gguf(model_dir: Path, out: Path, quant: str, name: str) -> None:
    """Write the model in ``model_dir`` (a Llama, safetensors weights, a tokenizer) to the GGUF file ``out``.

    Args:
        model_dir: A Hugging Face model folder (``config.json``, ``*.safetensors``, tokenizer files).
        out: The file to write (the caller makes it atomic).
        quant: One of :data:`QUANTS`; Q8_0 falls back to F16 for a matrix whose rows are not a
            whole number of 32-value blocks, as llama.cpp does.
        name: The run's name, for ``general.name`` and messages.
    """
    import gguf
    import numpy as np
    from safetensors import safe_open
    from transformers import AutoConfig

    check_llama(model_dir, name)
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    file_type, matrix_type = {
        "f16": (gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
        "bf16": (gguf.LlamaFileType.MOSTLY_BF16, gguf.GGMLQuantizationType.BF16),
        "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0),
    }[quant]
    shards = sorted(Path(model_dir).glob("*.safetensors"))
    files = {path: safe_open(path, framework="pt") for path in shards}
    plan = plan_tensors(files, config, matrix_type)
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    add_model_keys(writer, config, file_type, name, parameters=sum(math.prod(t.shape) for t in plan))
    add_tokenizer(writer, model_dir, config.vocab_size, name)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for tensor in plan:
        byte_shape = gguf.quants.quant_shape_to_byte_shape(tensor.shape, tensor.qtype)
        dtype = np.dtype(STORED_AS.get(tensor.qtype.name, "uint8"))  # quantized and BF16 data travel as bytes
        shape = byte_shape if dtype == np.uint8 else tensor.shape
        writer.add_tensor_info(tensor.name, shape, dtype, math.prod(byte_shape), raw_dtype=tensor.qtype)
    writer.write_header_to_file(path=Path(out))
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in plan:
        writer.write_tensor_data(gguf.quants.quantize(tensor_values(files, tensor, config), tensor.qtype))
    writer.close()


def plan_tensors(files: dict, config, matrix_type) -> list[PlannedTensor]:
    """Every tensor of the file in order, from the safetensors' names and shapes alone (no data read)."""
    import gguf

    names = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    plan = []
    for shard, handle in files.items():
        for source in handle.keys():
            if source.endswith(".rotary_emb.inv_freq"):
                continue  # recomputed by every runtime
            if source == "lm_head.weight" and config.tie_word_embeddings:
                continue  # llama.cpp reads no output.weight as "tied to token_embd"
            target = names.get_name(source, try_suffixes=(".weight", ".bias"))
            if target is None:
                raise RunError(f"GGUF export: no llama.cpp name for tensor {source}")
            shape = tuple(handle.get_slice(source).get_shape())
            plan.append(PlannedTensor(source, shard, target, shape, storage_type(target, shape, matrix_type)))
    factors = llama3_rope_factors(config)
    if factors is not None:
        plan.append(PlannedTensor("", None, gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", (len(factors),),
                                  gguf.GGMLQuantizationType.F32))
    return plan


def storage_type(target: str, shape: tuple[int, ...], matrix_type):
    """How llama.cpp's converter stores a tensor: vectors and norms F32; a matrix as asked, F16 if Q8_0 cannot hold it."""
    import gguf

    if len(shape) <= 1 or target.endswith("_norm.weight") or not target.endswith(".weight"):
        return gguf.GGMLQuantizationType.F32
    block, _ = gguf.GGML_QUANT_SIZES[matrix_type]
    return matrix_type if shape[-1] % block == 0 else gguf.GGMLQuantizationType.F16


def tensor_values(files: dict, tensor: PlannedTensor, config):
    """The tensor's values as float32 numpy, with q and k permuted into llama.cpp's rotary layout."""
    import numpy as np

    if not tensor.source:
        return np.asarray(llama3_rope_factors(config), dtype=np.float32)
    values = files[tensor.shard].get_tensor(tensor.source).float().numpy()
    heads = config.num_attention_heads
    if tensor.source.endswith(("q_proj.weight", "q_proj.bias")):
        values = rotary_permute(values, heads)
    elif tensor.source.endswith(("k_proj.weight", "k_proj.bias")):
        values = rotary_permute(values, getattr(config, "num_key_value_heads", None) or heads)
    return values


def rotary_permute(values, heads: int):
    """Hugging Face rotates the two halves of each head; llama.cpp rotates interleaved pairs: reorder rows to match.

    The same reshape as llama.cpp's ``LlamaModel.permute`` (``n_head`` being the kv heads for k).
    """
    rows = values.shape[0]
    return (values.reshape(heads, 2, rows // heads // 2, *values.shape[1:])
            .swapaxes(1, 2).reshape(values.shape))


def rope_settings(config) -> dict:
    """The config's RoPE parameters as one dict (transformers 5 ``rope_parameters``, or older ``rope_theta``)."""
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope.setdefault("rope_theta", getattr(config, "rope_theta", None) or 10000.0)
    rope.setdefault("rope_type", rope.get("type") or "default")
    return rope


def llama3_rope_factors(config) -> list[float] | None:
    """Llama 3.x's per-frequency RoPE divisors (llama.cpp's ``rope_freqs`` tensor), or ``None`` for other RoPE."""
    rope = rope_settings(config)
    if rope["rope_type"] != "llama3":
        return None
    dim = head_dim(config)
    factor, low, high = rope.get("factor", 8.0), rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    context = rope.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = context / low, context / high
    factors = []
    for index in range(0, dim, 2):
        wavelen = 2 * math.pi * rope["rope_theta"] ** (index / dim)
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (context / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return factors


def head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def add_model_keys(writer, config, file_type, name: str, parameters: int) -> None:
    """The ``general.*`` and ``llama.*`` keys llama.cpp's converter writes for a Llama."""
    import gguf

    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_size_label(gguf.size_label(parameters, 0, 0, 0))
    writer.add_file_type(file_type)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    if getattr(config, "head_dim", None):
        writer.add_key_length(config.head_dim)
        writer.add_value_length(config.head_dim)
    writer.add_rope_dimension_count(head_dim(config))
    rope = rope_settings(config)
    writer.add_rope_freq_base(rope["rope_theta"])
    if rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])
