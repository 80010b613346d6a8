"""``tui-ft export NAME --gguf / --ollama``: the merged model as one GGUF file, read back by an independent reader.

transformers' own GGUF loader (``from_pretrained(dir, gguf_file=...)``, model and tokenizer) reads
each file; its greedy replies to the shipped benchmark prompts are compared with the merged
Hugging Face export's. Most checks use a tiny random Llama (a LoRA run trained two steps) whose
tokenizer is the default model's cut to its first 2,000 tokens: the same byte-level BPE, special
tokens and chat template, but a vocabulary that transformers' GGUF reader parses in a second
(the full 49,152 tokens and merges take it 10-30 s per file). One end-to-end case exports a LoRA
run of the default model, with its full tokenizer, through the CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tui_ft.cli import main
from tui_ft.engine.runs import RunError, create_run
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.training.export import export_gguf, export_merged, export_ollama
from tui_ft.engine.training.ollama import modelfile_text
from tui_ft.engine.training.trainer import train_run

REPO = Path(__file__).resolve().parents[2]
PROMPTS = [json.loads(line)["instruction"] for line in (REPO / "datasets" / "seed_benchmark.jsonl").open()]
NEW_TOKENS = 20

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lora_run(home: Path, model: Path, **values) -> Path:
    """A finished LoRA run of ``model`` (weight_dtype auto: the adapter merges into bf16 weights)."""
    shutil.copytree(REPO / "datasets", home / "datasets", dirs_exist_ok=True)
    (home / "checkpoints").mkdir(exist_ok=True)
    values = {"model": str(model), "dataset": "datasets/seed_instructions.jsonl", "method": "lora", "eval_split": 0.0,
              "save_every": 0, "seed": 7, "warmup_ratio": 0.0} | values
    run_dir = create_run(TrainConfig(**values), home)
    assert train_run(run_dir) == "finished"
    return run_dir


def small_tokenizer(source: Path, folder: Path, size: int = 2000) -> Path:
    """``source``'s tokenizer keeping its first ``size`` tokens and the merges among them (specials come first)."""
    spec = json.loads((source / "tokenizer.json").read_text())
    vocab = {token: index for token, index in spec["model"]["vocab"].items() if index < size}
    merges = [pair for pair in spec["model"]["merges"] if pair[0] in vocab and pair[1] in vocab and "".join(pair) in vocab]
    spec["model"]["vocab"], spec["model"]["merges"] = vocab, merges
    folder.mkdir(parents=True)
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    for name in ("tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(source / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, default_model_path) -> Path:
    """A tiny random Llama (2 layers, hidden size 32, tied embeddings) with the 2,000-token tokenizer."""
    from conftest import build_tiny_model

    folder = tmp_path_factory.mktemp("small")
    return build_tiny_model(folder / "model", small_tokenizer(default_model_path, folder / "tokenizer"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, small_model) -> Path:
    return lora_run(tmp_path_factory.mktemp("home"), small_model, name="tiny-lora", lr=0.1, max_steps=2)


@pytest.fixture(scope="module")
def exports(tiny_run, tmp_path_factory) -> Path:
    """The merged folder and one GGUF file per quant, side by side."""
    out = tmp_path_factory.mktemp("exports")
    export_merged(tiny_run, out / "merged")
    for quant in ("f16", "bf16", "q8_0"):
        assert export_gguf(tiny_run, out / f"tiny-{quant}.gguf", quant=quant) == out / f"tiny-{quant}.gguf"
    return out


def prompt_ids(tokenizer) -> list[list[int]]:
    """The benchmark prompts as the chat pane sends them (the chat template with a generation prompt)."""
    return [tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                          tokenize=True, return_dict=True)["input_ids"] for prompt in PROMPTS]


def text_ids(tokenizer) -> list[list[int]]:
    """The benchmark prompts as plain text with the default special tokens (the alpaca template's way)."""
    return [tokenizer(prompt)["input_ids"] for prompt in PROMPTS]


def greedy_replies(model, prompts: list[list[int]]) -> list[list[int]]:
    """``NEW_TOKENS`` greedy tokens per prompt, never stopped early (an end token is compared like any other).

    The prompts go as one left-padded batch: 20 decoding steps, not 100, for the default model.
    """
    import torch

    width = max(len(ids) for ids in prompts)
    batch = torch.tensor([[0] * (width - len(ids)) + ids for ids in prompts])
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts])
    with torch.no_grad():
        out = model.generate(batch, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
    return out[:, width:].tolist()


def same_next_tokens(model, prompts: list[list[int]], replies: list[list[int]]) -> int:
    """How many of the replies' tokens ``model`` also picks next, fed each reply's prefix (teacher forcing).

    For a quantized copy this counts each disagreement once: in free-running decoding one flip at
    a near-tie (the default model's "The answer is" / "The answer to") changes every later token.
    """
    import torch

    same = 0
    with torch.no_grad():
        for ids, reply in zip(prompts, replies, strict=True):
            logits = model(torch.tensor([ids + reply])).logits[0, len(ids) - 1:-1]
            same += int((logits.argmax(-1) == torch.tensor(reply)).sum())
    return same


def load_gguf(path: Path):
    """transformers' reading of a GGUF file: ``(model, tokenizer)``, weights dequantized to float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def merged_replies(exports) -> tuple[list[list[int]], list[list[int]]]:
    """The merged Hugging Face export's prompt ids and greedy replies (float32, like the GGUF readings)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exports / "merged")
    model = AutoModelForCausalLM.from_pretrained(exports / "merged", dtype=torch.float32).eval()
    ids = prompt_ids(tokenizer)
    return ids, greedy_replies(model, ids)


@pytest.mark.parametrize("quant", ["f16", "bf16", "q8_0"])
def test_transformers_reads_the_gguf_and_replies_as_the_merged_model(exports, merged_replies, quant):
    from transformers import AutoTokenizer

    ids, expected = merged_replies
    model, tokenizer = load_gguf(exports / f"tiny-{quant}.gguf")
    assert prompt_ids(tokenizer) == ids  # the tokenizer and chat template round-trip: the same ids
    assert text_ids(tokenizer) == text_ids(AutoTokenizer.from_pretrained(exports / "merged"))  # no BOS added either
    assert model.config.tie_word_embeddings and model.config.num_hidden_layers == 2
    if quant == "q8_0":
        assert same_next_tokens(model, ids, expected) >= 0.9 * NEW_TOKENS * len(PROMPTS)
    else:
        assert greedy_replies(model, ids) == expected


def test_the_metadata_holds_the_tokenizer_chat_template_and_llama_keys(exports, small_model):
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_model)
    sizes = {}
    for quant, file_type, matrix in [("f16", 1, "F16"), ("bf16", 32, "BF16"), ("q8_0", 7, "Q8_0")]:
        reader = gguf.GGUFReader(exports / f"tiny-{quant}.gguf")
        sizes[quant] = sum(int(tensor.n_bytes) for tensor in reader.tensors)
        fields = reader.fields
        value = lambda key, fields=fields: fields[key].contents()  # noqa: E731
        assert value("general.architecture") == "llama" and value("general.name") == "tiny-lora"
        assert value("general.file_type") == file_type
        assert (value("llama.block_count"), value("llama.embedding_length"), value("llama.attention.head_count"),
                value("llama.attention.head_count_kv"), value("llama.feed_forward_length")) == (2, 32, 4, 2, 64)
        assert value("tokenizer.ggml.model") == "gpt2"
        assert value("tokenizer.chat_template") == tokenizer.chat_template
        tokens = value("tokenizer.ggml.tokens")
        assert len(tokens) == len(tokenizer) and tokens[tokenizer.eos_token_id] == tokenizer.eos_token
        assert value("tokenizer.ggml.token_type")[tokenizer.eos_token_id] == gguf.TokenType.CONTROL
        assert value("tokenizer.ggml.merges")[0] == "Ġ t"  # as tokenizer.json's first merge
        assert (value("tokenizer.ggml.bos_token_id"), value("tokenizer.ggml.eos_token_id")) == (
            tokenizer.bos_token_id, tokenizer.eos_token_id)
        assert value("tokenizer.ggml.add_bos_token") is False  # SmolLM2's tokenizer adds no BOS
        types = {tensor.name: tensor.tensor_type.name for tensor in reader.tensors}
        assert "output.weight" not in types  # tied embeddings: llama.cpp reuses token_embd
        assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"
        assert types["blk.1.attn_q.weight"] == types["token_embd.weight"] == types["blk.0.ffn_down.weight"] == matrix
        assert len(types) == 1 + 1 + 2 * 9
    assert sizes["f16"] == sizes["bf16"] and sizes["q8_0"] < 0.6 * sizes["f16"]  # 34 bytes per 32 values, not 64
    assert not list(exports.glob(".tmp-*"))  # no staging file or merged folder left behind


def test_gguf_refuses_an_existing_file_and_leaves_it_alone(tiny_run, tmp_path, capsys):
    out = tmp_path / "taken.gguf"
    out.write_text("mine")
    home = tiny_run.parents[1]
    assert main(["--home", str(home), "export", "tiny-lora", "--gguf", str(out)]) == 2
    assert capsys.readouterr().err == f"tui-ft: {out}: already exists\n"
    assert out.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["taken.gguf"]


def test_the_three_targets_are_alternatives_and_one_is_required(tiny_run, tmp_path, capsys):
    home = str(tiny_run.parents[1])
    with pytest.raises(SystemExit) as both:
        main(["--home", home, "export", "tiny-lora", "--gguf", str(tmp_path / "a.gguf"), "--merged", str(tmp_path / "m")])
    assert both.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as neither:
        main(["--home", home, "export", "tiny-lora"])
    assert neither.value.code == 2 and "one of the arguments --merged --gguf --ollama is required" in capsys.readouterr().err
    assert main(["--home", home, "export", "tiny-lora", "--merged", str(tmp_path / "m"), "--quant", "q8_0"]) == 2
    assert "--quant applies to --gguf and --ollama" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_another_architecture_is_refused_in_one_line_before_anything_is_written(tmp_path, small_model, capsys):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    base = tmp_path / "qwen"
    config = Qwen2Config(vocab_size=len(AutoTokenizer.from_pretrained(small_model)), hidden_size=32,
                         intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2)
    Qwen2ForCausalLM(config).save_pretrained(base)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(small_model / name, base / name)
    home = tmp_path / "home"
    lora_run(home, base, name="qwen-lora", max_steps=1)
    out = tmp_path / "out"
    for flag, target in (("--gguf", out / "q.gguf"), ("--ollama", out / "ollama")):
        assert main(["--home", str(home), "export", "qwen-lora", flag, str(target)]) == 2
        assert capsys.readouterr().err == (
            "tui-ft: qwen-lora: GGUF export supports Llama-architecture models; this one is Qwen2ForCausalLM\n")
    assert not out.exists()


def ollama_messages_rendering(template: str, messages: list[dict]) -> str:
    """What Ollama's Go template makes of ``messages`` on its ``.Messages`` branch, for the ChatML template.

    Its range body is plain text with ``{{ .Role }}`` and ``{{ .Content }}`` (no nested blocks), so
    expanding it is a substitution: enough to hold the written template to the model's own.
    """
    branch = template.split("{{- range .Messages }}", 1)[1].split("{{ else }}", 1)[0]
    body, tail = branch.split("{{ end }}", 1)
    turns = "".join(body.replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"]) for m in messages)
    return turns + tail


def test_ollama_folder_holds_the_gguf_and_a_chatml_modelfile_equal_to_the_chat_template(tiny_run, tmp_path, tokenizer):
    out = export_ollama(tiny_run, tmp_path / "ollama", quant="q8_0")
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "model.gguf"]
    lines = (out / "Modelfile").read_text().splitlines()
    assert "FROM ./model.gguf" in lines
    stops = [line for line in lines if line.startswith("PARAMETER stop")]
    assert stops == ['PARAMETER stop "<|im_start|>"', 'PARAMETER stop "<|im_end|>"']
    text = (out / "Modelfile").read_text()
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    system = text.split('SYSTEM """', 1)[1].split('"""', 1)[0]
    assert system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    conversation = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"},
                    {"role": "user", "content": "And 3 + 3?"}]
    # Ollama puts the Modelfile's SYSTEM first when a conversation has no system message.
    ollama = ollama_messages_rendering(template, [{"role": "system", "content": system}] + conversation)
    assert ollama == tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    with_system = [{"role": "system", "content": "Be brief."}] + conversation
    assert ollama_messages_rendering(template, with_system) == tokenizer.apply_chat_template(
        with_system, tokenize=False, add_generation_prompt=True)


def test_alpaca_runs_get_the_alpaca_template_and_other_chat_templates_are_refused(tokenizer):
    text = modelfile_text(tokenizer, "alpaca", "seed-run")
    assert "### Instruction:\n{{ .Prompt }}\n\n### Response:\n" in text
    assert "{{ .Content }}<|im_end|>{{ end }}" in text  # each past reply ends with EOS, as training rendered it
    assert 'PARAMETER stop "### Instruction:"' in text and 'PARAMETER stop "<|im_end|>"' in text
    assert "SYSTEM" not in text

    class Llama3Style:
        eos_token = "<|eot_id|>"
        chat_template = "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>{% endfor %}"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>" for m in messages)

    with pytest.raises(RunError, match="^other: an Ollama Modelfile is written for ChatML"):
        modelfile_text(Llama3Style(), "chat", "other")


def test_llama3_rope_factors_match_transformers_llama3_frequencies():
    import torch
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from tui_ft.engine.training.gguf_export import llama3_rope_factors

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    config = LlamaConfig(hidden_size=2048, num_attention_heads=32, head_dim=64, rope_parameters=rope)
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    plain = 1.0 / (500000.0 ** (torch.arange(0, 64, 2, dtype=torch.float32) / 64))
    factors = torch.tensor(llama3_rope_factors(config))
    assert factors.min() == 1.0 and factors.max() == 32.0  # both ends and the smooth middle occur
    assert torch.allclose(plain / factors, scaled, rtol=1e-5)  # llama.cpp divides each frequency by its factor


def test_default_model_end_to_end_through_the_cli(default_model_path, tmp_path, capsys):
    """A LoRA run of SmolLM2-135M-Instruct exported for Ollama as Q8_0, its GGUF read back by transformers.

    The full 49,152-token tokenizer round-trips (the same prompt ids), and fed the merged model's
    greedy replies, the GGUF's model picks the same next token at least 90% of the time.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from tui_ft.engine.models import load_tokenizer

    home = tmp_path / "home"
    run_dir = lora_run(home, default_model_path, name="smol-lora", max_steps=1, batch_size=2, max_length=64)
    out = tmp_path / "ollama"
    capsys.readouterr()  # training's own output
    assert main(["--home", str(home), "export", "smol-lora", "--ollama", str(out), "--quant", "q8_0"]) == 0
    printed = capsys.readouterr()
    assert printed.out == f"{out}\n" and f"ollama create smol-lora -f {out / 'Modelfile'}" in printed.err
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in (out / "Modelfile").read_text()
    merged = export_merged(run_dir, tmp_path / "merged")
    ids = prompt_ids(load_tokenizer(merged))
    expected = greedy_replies(AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval(), ids)
    model, tokenizer = load_gguf(out / "model.gguf")
    assert prompt_ids(tokenizer) == ids
    assert same_next_tokens(model, ids, expected) >= 0.9 * NEW_TOKENS * len(PROMPTS)
