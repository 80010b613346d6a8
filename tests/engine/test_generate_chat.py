"""ChatModel on a tiny model: history fitting, the model cache, the adapter switch, and the CLI."""

from __future__ import annotations

import io
import os
import re

import orjson
import pytest
import torch

from tui_ft.cli import main
from tui_ft.engine.data.templates import encode_text, render_prompt
from tui_ft.engine.generation import ChatModel, GenerationSettings, fit_history, load_chat_model
from tui_ft.engine.models import load_model, resolve_model

SYSTEM = {"role": "system", "content": "You answer in French."}


def conversation(turns: int) -> list[dict]:
    """A system message, ``turns`` user/assistant pairs of about 30 tokens, and a last question."""
    messages = [SYSTEM]
    for n in range(turns):
        messages.append({"role": "user", "content": f"Question number {n}: " + "tell me about rivers " * 5})
        messages.append({"role": "assistant", "content": f"Answer number {n}: " + "rivers flow to the sea " * 5})
    messages.append({"role": "user", "content": "The last question?"})
    return messages


@pytest.fixture(scope="module")
def tiny_chat(tiny_model_dir):
    model, tokenizer = load_model(resolve_model(str(tiny_model_dir)))
    return ChatModel("tiny", model, tokenizer)


def test_history_fits_by_dropping_the_oldest_turns(tiny_chat):
    tokenizer, messages = tiny_chat.tokenizer, conversation(6)
    whole = len(encode_text(tokenizer, render_prompt(messages, tokenizer, "chat")))
    ids, notice = fit_history(messages, tokenizer, "chat", budget=whole - 60)
    text = tokenizer.decode(ids)
    assert len(ids) <= whole - 60
    assert "You answer in French." in text and "The last question?" in text  # kept
    assert "Question number 0" not in text and "Answer number 0" not in text  # the oldest turn went
    assert "Question number 5" in text
    assert text.count("<|im_start|>user") == text.count("<|im_start|>assistant")  # whole turns only
    assert notice and "dropped" in notice
    whole_prompt = encode_text(tokenizer, render_prompt(messages, tokenizer, "chat"))
    assert fit_history(messages, tokenizer, "chat", budget=whole) == (whole_prompt, None)


def test_stream_truncates_to_the_context_and_says_so(tiny_chat):
    chat = ChatModel("tiny", tiny_chat.model, tiny_chat.tokenizer, context_length=200)
    settings = GenerationSettings(max_new_tokens=8)
    reply = chat.reply(conversation(6), settings)
    assert chat.last_notice and "dropped" in chat.last_notice
    assert chat.last_stats.prompt_tokens <= 200 - 8
    assert chat.last_stats.new_tokens == 8 and isinstance(reply, str)
    chat.reply(conversation(0), settings)
    assert chat.last_notice is None


def test_alpaca_template_reply_equals_stream(tiny_chat):
    messages = [{"role": "user", "content": "Say something."}]
    settings = GenerationSettings(max_new_tokens=10, temperature=0.9, seed=3)
    streamed = "".join(tiny_chat.stream(messages, settings, template="alpaca"))
    assert streamed == tiny_chat.reply(messages, settings, template="alpaca")
    prompt = "### Instruction:\nSay something.\n\n### Response:\n"
    assert tiny_chat.last_stats.prompt_tokens == len(encode_text(tiny_chat.tokenizer, prompt))


def test_stream_refuses_a_conversation_not_ending_with_the_user(tiny_chat):
    with pytest.raises(ValueError, match="user message"):
        tiny_chat.stream([{"role": "assistant", "content": "hi"}], GenerationSettings())


def test_models_are_cached_per_reference_and_dtype(tiny_model_dir, tmp_path):
    first = load_chat_model(str(tiny_model_dir), tmp_path, dtype="float32")
    assert load_chat_model(str(tiny_model_dir), tmp_path, dtype="float32") is first
    half = load_chat_model(str(tiny_model_dir), tmp_path, dtype="bfloat16")
    assert half is not first and next(half.model.parameters()).dtype == torch.bfloat16
    assert first.template == "chat" and first.context_length == 512 and not first.has_adapter


def test_a_third_model_evicts_the_least_recently_used(tiny_model_dir, tmp_path, monkeypatch):
    from tui_ft.engine.generation import chat_model

    chat_model.forget_chat_models()
    freed = []
    monkeypatch.setattr(chat_model, "_free_memory", freed.append)
    monkeypatch.setenv("TUI_FT_DEVICE", "cpu")
    one = load_chat_model(str(tiny_model_dir), tmp_path, dtype="float32")
    two = load_chat_model(str(tiny_model_dir), tmp_path, dtype="bfloat16")
    assert load_chat_model(str(tiny_model_dir), tmp_path, dtype="float32") is one  # one is now the most recent
    assert freed == []
    load_chat_model(str(tiny_model_dir), tmp_path / "elsewhere", dtype="float32")
    assert freed == ["cpu"]  # two went, and its memory was given back
    assert load_chat_model(str(tiny_model_dir), tmp_path, dtype="float32") is one
    assert load_chat_model(str(tiny_model_dir), tmp_path, dtype="bfloat16") is not two
    chat_model.forget_chat_models()


def test_chat_and_evaluation_run_where_tui_ft_device_says(monkeypatch):
    from tui_ft.engine.evaluation.model_session import evaluation_dtype
    from tui_ft.engine.models.devices import inference_device

    monkeypatch.setenv("TUI_FT_DEVICE", "cuda:1")
    assert inference_device() == "cuda:1"
    monkeypatch.delenv("TUI_FT_DEVICE")
    assert inference_device() == "cpu"  # the suite hides CUDA: auto falls back to the CPU
    assert evaluation_dtype("cpu") == torch.float32


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    """A workspace with a finished LoRA run on the tiny model (random, non-zero adapter)."""
    from peft import LoraConfig, get_peft_model

    home = tmp_path_factory.mktemp("home")
    run = home / "checkpoints" / "lora-run"
    model, _ = load_model(resolve_model(str(tiny_model_dir)))
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(run / "adapter")
    (run / "run.json").write_bytes(orjson.dumps({"model": str(tiny_model_dir), "template": "alpaca"}))
    return home


def test_adapter_switches_off_to_the_base_model(lora_run, tiny_model_dir):
    chat = load_chat_model("lora-run", lora_run, dtype="float32")
    base = load_chat_model(str(tiny_model_dir), lora_run, dtype="float32")
    assert chat.has_adapter and chat.template == "alpaca"
    messages = [{"role": "user", "content": "Hello there"}]
    settings = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=5)
    tuned = chat.reply(messages, settings)
    assert chat.reply(messages, settings, use_adapter=False) == base.reply(messages, settings, template="alpaca")
    assert tuned != base.reply(messages, settings, template="alpaca")
    assert chat.reply(messages, settings) == tuned  # the adapter is back on after the switch


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_adapter_greedy_equals_transformers_generate(lora_run, dtype):
    """LoRA layers on q, v and down run as modules, the plain k, o, gate and up on laid-out
    (in bf16: stacked where exact) weights: the tokens are still generate()'s."""
    from tui_ft.engine.generation.token_loop import eos_token_ids, generate_token_ids

    chat = load_chat_model("lora-run", lora_run, dtype=dtype)
    ids = encode_text(chat.tokenizer, "### Instruction:\nHello\n\n### Response:\n")
    ours = list(generate_token_ids(chat.model, ids, GenerationSettings(max_new_tokens=12), eos_token_ids(chat.model, chat.tokenizer)))
    with torch.inference_mode():
        x = torch.tensor([ids])
        expected = chat.model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=12, do_sample=False)
    assert ours == expected[0, len(ids) :].tolist()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "0"], "top-p"),
        (["--top-p", "1.5"], "top-p"),
        (["--max-new-tokens", "0"], "max new tokens"),
    ],
)
def test_cli_refuses_bad_values_in_one_line(options, message, tmp_path, capsys):
    assert main(["--home", str(tmp_path), "chat", "default", "--prompt", "hi", *options]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_an_unknown_model(tmp_path, capsys):
    assert main(["--home", str(tmp_path), "chat", "no-such-model", "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model" in err[0]


def test_cli_prompt_prints_the_reply(tiny_model_dir, tmp_path, capsys):
    code = main(["--home", str(tmp_path), "chat", str(tiny_model_dir), "--prompt", "Hi", "--max-new-tokens", "6",
                 "--temperature", "1", "--seed", "1", "--dtype", "float32", "--stats"])
    out, err = capsys.readouterr()
    chat = load_chat_model(str(tiny_model_dir), tmp_path, dtype="float32")
    expected = chat.reply([{"role": "user", "content": "Hi"}], GenerationSettings(max_new_tokens=6, temperature=1.0, seed=1))
    assert code == 0 and out == expected + "\n"
    assert re.search(r"6 tokens, [\d.]+ tokens/s, first token [\d.]+ s", err)


def test_cli_repl_keeps_history_until_reset(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("first\nsecond\n/reset\nthird\n/quit\nnever read\n"))
    code = main(["--home", str(tmp_path), "chat", str(tiny_model_dir), "--max-new-tokens", "4", "--dtype", "float32",
                 "--stats", "--system", "Be brief."])
    out, err = capsys.readouterr()
    prompts = [int(n) for n in re.findall(r"prompt (\d+) tokens", err)]
    assert code == 0 and len(out.splitlines()) == 3 and len(prompts) == 3
    assert prompts[1] > prompts[0] + 4  # the second turn carries the first
    assert prompts[2] == prompts[0]  # a new conversation after /reset ("third" and "first" are one token each)
    assert "(new conversation)" in err


def test_cli_device_is_checked_in_one_line_and_passed_on(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TUI_FT_DEVICE", "auto")  # restored after the test, whatever use_device sets
    assert main(["--home", str(tmp_path), "chat", "default", "--device", "gpu:0", "--prompt", "hi"]) == 2
    assert capsys.readouterr().err.strip() == "tui-ft: --device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu:0'"
    from tui_ft.commands.devices import use_device

    use_device("cuda:3")
    assert os.environ["TUI_FT_DEVICE"] == "cuda:3"
