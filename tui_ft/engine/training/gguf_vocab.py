"""A Hugging Face byte-level BPE tokenizer as GGUF metadata (``tokenizer.ggml.*``, ``tokenizer.chat_template``).

The keys and values follow llama.cpp's ``convert_hf_to_gguf.py`` (``_set_vocab_gpt2``,
``get_vocab_base``): the tokenizer model ``gpt2``, every token with its type, the merges, the
special token ids and the chat template, the last three read by the ``gguf`` package's own
``SpecialVocab``, as llama.cpp reads them.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from tui_ft.engine.runs import RunError

# llama.cpp names a BPE pre-tokenizer (``tokenizer.ggml.pre``) from a hash of a test string's
# tokens; we name it from the pre-tokenizer ``tokenizer.json`` describes, for the two shapes
# this export knows: GPT-2's regex alone, and SmolLM's (every digit split off first).
GPT2_PRE = "gpt-2"
SMOLLM_PRE = "smollm"


def bpe_pre_tokenizer(folder: Path, name: str) -> str:
    """The llama.cpp pre-tokenizer name of the byte-level BPE tokenizer in ``folder``.

    Raises:
        RunError: It is not a byte-level BPE tokenizer with a pre-tokenizer named above (one line,
            naming the run).
    """
    path = Path(folder) / "tokenizer.json"
    try:
        spec = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        raise RunError(f"{name}: GGUF export needs the model's tokenizer.json, which {folder} lacks") from None
    model_type = (spec.get("model") or {}).get("type")
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [(step.get("type"), step.get("use_regex", True)) for step in steps]
    if model_type == "BPE" and kinds == [("ByteLevel", True)]:
        return GPT2_PRE
    digits = steps[0] if steps else {}
    if model_type == "BPE" and kinds == [("Digits", True), ("ByteLevel", True)] and digits.get("individual_digits"):
        return SMOLLM_PRE
    shape = " + ".join(str(kind) for kind, _ in kinds) or "none"
    raise RunError(f"{name}: GGUF export supports byte-level BPE tokenizers (GPT-2 style); this one is "
                   f"{model_type or 'unknown'} with pre-tokenizer {shape}")


def looks_special(token: str) -> bool:
    """An added token llama.cpp treats as a control token even when not marked special (``does_token_look_special``)."""
    return (token in ("<pad>", "<mask>") or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<unused") and token.endswith(">")))


def token_table(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every token id below ``vocab_size`` as ``(text, gguf.TokenType)``; ids with no token are UNUSED ``[PADi]``."""
    import gguf

    by_id = {index: text for text, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        text = by_id.get(index)
        if text is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            special = added[index].special or looks_special(text)
            tokens.append(text)
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(text)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def adds_special_tokens(tokenizer) -> tuple[bool, bool]:
    """Whether encoding text puts BOS in front and EOS behind, measured rather than read from config files.

    llama.cpp honours ``tokenizer.ggml.add_bos_token`` when it tokenizes a prompt; a wrong value
    shifts every prompt by one token, so the flag says what this tokenizer really does.
    """
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    adds_bos = bos is not None and len(full) > len(plain) and full[0] == bos
    adds_eos = eos is not None and len(full) > len(plain) and full[-1] == eos
    return adds_bos, adds_eos


def add_tokenizer(writer, folder: Path, vocab_size: int, name: str) -> None:
    """Write the tokenizer in ``folder`` into ``writer``'s metadata, as llama.cpp's GPT-2 vocab path does."""
    import gguf
    from transformers import AutoTokenizer

    pre = bpe_pre_tokenizer(folder, name)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tokens, types = token_table(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    adds_bos, adds_eos = adds_special_tokens(tokenizer)
    special.add_special_token = {"bos": adds_bos, "eos": adds_eos}  # measured, not SpecialVocab's reading
    special.add_to_gguf(writer, quiet=True)
    config_path = Path(folder) / "tokenizer_config.json"
    config = orjson.loads(config_path.read_bytes()) if config_path.is_file() else {}
    if isinstance(config.get("add_prefix_space"), bool):  # as llama.cpp: only when the config says
        writer.add_add_space_prefix(config["add_prefix_space"])
