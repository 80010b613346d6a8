"""A reward model (--method reward): it learns the preferences, and any tool loads it and gets the same scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tui_ft.cli import main
from tui_ft.engine.models import ModelError, list_models, resolve_model
from tui_ft.engine.runs import create_run, read_metrics, read_status
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.training.reward import bradley_terry_loss, load_reward_model, score_replies
from tui_ft.engine.training.trainer import train_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOPICS = ["the sea", "a cat", "rain", "bread", "a river", "the moon", "trains", "tea", "snow", "a garden",
          "music", "stars"]


def preference_file(path: Path) -> Path:
    """Pairs a tiny random model can learn fast: the chosen reply always says "good", the rejected "bad"."""
    rows = [{"prompt": f"Tell me about {topic}.", "chosen": f"Good good good: {topic} is good.",
             "rejected": f"Bad bad bad: {topic} is bad."} for topic in TOPICS]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_bradley_terry_loss_is_the_log_sigmoid_of_the_margin():
    chosen, rejected = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    expected = [-torch.nn.functional.logsigmoid(torch.tensor(m)).item() for m in (2.0, 0.0, -2.0)]
    assert bradley_terry_loss(chosen, rejected).tolist() == pytest.approx(expected)
    assert bradley_terry_loss(chosen, rejected)[1].item() == pytest.approx(0.6931, abs=1e-4)  # no preference: ln 2


def test_a_reward_model_learns_the_pairs_and_loads_anywhere_with_the_same_scores(workspace, tiny_model_dir, tmp_path,
                                                                                 capsys):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data = preference_file(workspace / "datasets" / "good_bad.jsonl")
    run_dir = create_run(TrainConfig(model=str(tiny_model_dir), dataset=str(data), method="reward", lr=3e-3,
                                     max_steps=16, batch_size=4, eval_split=0.25, eval_every=8, warmup_ratio=0.0,
                                     save_every=8, seed=3, name="rm"), workspace)
    assert train_run(run_dir) == "finished"
    records = read_metrics(run_dir)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(train) == 16 and {"loss", "accuracy", "margin"} <= train[0].keys()
    assert train[0]["loss"] == pytest.approx(0.6931, abs=0.05)  # a new head: no preference yet
    assert sum(r["loss"] for r in train[-4:]) / 4 < 0.3, [r["loss"] for r in train]
    assert evals[-1]["accuracy"] == 1.0 and evals[-1]["margin"] > 1.0, evals[-1]  # the 3 held-out pairs
    assert read_status(run_dir)["state"] == "finished"

    model, tokenizer, template = load_reward_model(run_dir)
    replies = ["Good good good: rain is good.", "Bad bad bad: rain is bad."]
    ours = score_replies(model, tokenizer, template, "Tell me about rain.", replies)
    assert ours[0] > ours[1] + 1.0

    # Loaded as any tool would: transformers' sequence classifier, the adapter (head included) with peft.
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1, dtype=torch.float32)
    base.config.pad_token_id = AutoTokenizer.from_pretrained(tiny_model_dir).pad_token_id
    independent = PeftModel.from_pretrained(base, run_dir / "adapter").eval()
    text = [tokenizer.apply_chat_template([{"role": "user", "content": "Tell me about rain."},
                                           {"role": "assistant", "content": reply}], tokenize=False) for reply in replies]
    encoded = tokenizer(text, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        theirs = independent(**encoded).logits[:, 0].tolist()
    assert theirs == pytest.approx(ours, abs=1e-4)

    # Merged: a plain sequence-classification folder.
    from tui_ft.engine.training.export import export_merged

    merged = AutoModelForSequenceClassification.from_pretrained(export_merged(run_dir, tmp_path / "merged"),
                                                                dtype=torch.float32).eval()
    assert merged.config.num_labels == 1 and merged.config.pad_token_id == tokenizer.pad_token_id
    with torch.no_grad():
        assert merged(**encoded).logits[:, 0].tolist() == pytest.approx(ours, abs=2e-2)  # merged into the bf16 base

    from tui_ft.engine.runs import RunError
    from tui_ft.engine.training.export import export_gguf

    with pytest.raises(RunError, match="rm: a reward model scores replies; GGUF and Ollama are for models that chat"):
        export_gguf(run_dir, tmp_path / "rm.gguf")
    # A reward model scores; it does not chat, and the model pickers leave it out.
    with pytest.raises(ModelError, match="rm: a reward model: it scores replies"):
        resolve_model("rm", workspace)
    assert "rm" not in [m["ref"] for m in list_models(workspace)]

    capsys.readouterr()
    # In this process: torch and the weights are loaded already (a child would load them again).
    assert main(["--home", str(workspace), "score", "rm", "--prompt", "Tell me about rain.", "--reply", replies[0],
                 "--reply", replies[1], "--json"]) == 0
    assert [row["reward"] for row in json.loads(capsys.readouterr().out)] == pytest.approx(ours, abs=1e-4)


def test_score_refuses_what_is_not_a_reward_model(workspace):
    run = workspace / "checkpoints" / "chatty"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"name": "chatty", "method": "lora", "model": "default",
                                              "model_path": "/models/x", "template": "chat"}))
    done = subprocess.run([sys.executable, "-m", "tui_ft", "--home", str(workspace), "score", "chatty", "--prompt", "hi",
                           "--reply", "hello"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == ("tui-ft: chatty: not a reward model (its method is lora); "
                                   "train one with --method reward")


def test_a_full_reward_model_trains_every_weight_and_saves_a_classifier_folder(workspace, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    config = TrainConfig(model=str(tiny_model_dir), dataset=str(preference_file(workspace / "datasets" / "gb.jsonl")),
                         method="reward", reward_mode="full", lr=1e-3, max_steps=12, batch_size=4, eval_split=0.25,
                         eval_every=12, warmup_ratio=0.0, seed=3, name="rm-full")
    assert not config.uses_lora and config.trains_every_weight
    assert config.resolved().lr == 1e-3 and TrainConfig(method="reward", reward_mode="full").resolved().lr == 1e-5
    assert TrainConfig(method="reward").resolved().lr == 2e-4 and TrainConfig(method="reward").uses_lora
    run_dir = create_run(config, workspace)
    assert train_run(run_dir) == "finished"
    assert (run_dir / "model" / "config.json").is_file() and not (run_dir / "adapter").exists()
    records = read_metrics(run_dir)
    train = [r for r in records if r["kind"] == "train"]
    assert sum(r["loss"] for r in train[-3:]) / 3 < train[0]["loss"] - 0.3, [r["loss"] for r in train]
    assert [r for r in records if r["kind"] == "eval"][-1]["accuracy"] == 1.0

    model, tokenizer, template = load_reward_model(run_dir)
    replies = ["Good good good: tea is good.", "Bad bad bad: tea is bad."]
    ours = score_replies(model, tokenizer, template, "Tell me about tea.", replies)
    assert ours[0] > ours[1]
    # Any tool loads the folder on its own: a one-output sequence classifier.
    independent = AutoModelForSequenceClassification.from_pretrained(run_dir / "model", dtype=torch.float32).eval()
    assert independent.config.num_labels == 1
    text = [tokenizer.apply_chat_template([{"role": "user", "content": "Tell me about tea."},
                                           {"role": "assistant", "content": reply}], tokenize=False) for reply in replies]
    encoded = tokenizer(text, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        assert independent(**encoded).logits[:, 0].tolist() == pytest.approx(ours, abs=1e-4)


def test_reward_mode_is_checked(workspace):
    from tui_ft.engine.runs import ConfigError

    with pytest.raises(ConfigError, match="reward_mode: must be lora or full"):
        create_run(TrainConfig(dataset="dpo_concise.jsonl", method="reward", reward_mode="half"), workspace)


def test_score_says_so_when_the_reward_models_base_is_gone(workspace):
    run = workspace / "checkpoints" / "orphan"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "run.json").write_text(json.dumps({"name": "orphan", "method": "reward", "model": "/gone/model",
                                              "model_path": "/gone/model", "template": "chat"}))
    done = subprocess.run([sys.executable, "-m", "tui_ft", "--home", str(workspace), "score", "orphan", "--prompt", "hi",
                           "--reply", "hello"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("tui-ft: orphan: its base model /gone/model is not a model folder any more "
                                   "(moved or deleted): the adapter needs it")


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_a_stopped_reward_run_resumes_on_the_same_curve(workspace, tiny_model_dir, mode):
    data = preference_file(workspace / "datasets" / "pairs.jsonl")

    def start(name):
        return create_run(TrainConfig(model=str(tiny_model_dir), dataset=str(data), method="reward", reward_mode=mode,
                                      lr=1e-3, max_steps=6, batch_size=4, eval_split=0.0, warmup_ratio=0.0,
                                      save_every=0, seed=11, name=name), workspace)

    straight, resumed = start(f"straight-{mode}"), start(f"resumed-{mode}")
    assert train_run(straight) == "finished"
    calls = iter(range(100))
    assert train_run(resumed, lambda: next(calls) >= 3) == "stopped"  # stopped before step 4, with a checkpoint
    assert read_status(resumed)["step"] == 3
    assert train_run(resumed) == "finished"
    curves = [[(r["loss"], r["accuracy"], r["margin"]) for r in read_metrics(d) if r["kind"] == "train"]
              for d in (straight, resumed)]
    assert len(curves[0]) == 6 and len(curves[1]) == 6
    assert [v for step in curves[1] for v in step] == pytest.approx([v for step in curves[0] for v in step], abs=1e-5)
