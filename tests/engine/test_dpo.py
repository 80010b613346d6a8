"""DPO: the loss against TRL and against the formula written out here, learning, resume, full mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_ft.engine.runs import create_run, list_checkpoints, read_metrics, read_status
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.training.dpo import REFERENCE_FILE, DPOObjective
from tui_ft.engine.training.trainer import train_run

DATASET = "datasets/dpo_concise.jsonl"
PAIRS = [{"prompt": "What is 2+2? ", "chosen": "4.", "rejected": "It is, well, probably four or so."},
         {"prompt": "Name a colour. ", "chosen": "Blue, the colour of a clear sky.", "rejected": "Chromatic."}]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory, default_model_path) -> Path:
    """A second tiny model (another seed): a reference that differs from the policy."""
    from conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("reference") / "model", default_model_path, seed=1)


def load(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def direct_dpo_loss(policy, reference, input_ids, attention_mask, completion_mask, beta: float):
    """DPO written out from the paper, with full logits: the independent check of our code."""
    import torch

    def logps(model):
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        per_token = torch.log_softmax(logits.float(), -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        return (per_token * completion_mask[:, 1:]).sum(-1)

    pi, ref = logps(policy), logps(reference)
    n = len(pi) // 2
    margin = (pi[:n] - ref[:n]) - (pi[n:] - ref[n:])
    return -torch.nn.functional.logsigmoid(beta * margin), beta * (pi[:n] - ref[:n]), beta * (pi[n:] - ref[n:])


def our_dpo(policy, reference, batch: dict, beta: float, tokenizer) -> dict:
    """Our objective's step statistics for a batch of [chosen rows; rejected rows]."""
    import torch

    from tui_ft.engine.training.dpo import sequence_logps

    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        ref = sequence_logps(reference, batch["input_ids"], batch["attention_mask"], labels)
    objective = DPOObjective([], tokenizer, "chat", 512, beta)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels,
              "reference": torch.stack(ref.chunk(2), dim=1)}
    with torch.no_grad():
        return objective.summarize([objective.forward(policy, inputs).stats])


def test_dpo_loss_equals_trl_on_a_fixed_batch(tiny_model_dir, reference_dir, tmp_path):
    import trl  # the test extra installs it: the check runs in CI
    from transformers import AutoTokenizer

    from datasets import Dataset

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy, reference = load(tiny_model_dir), load(reference_dir)
    args = trl.DPOConfig(output_dir=str(tmp_path / "trl"), beta=0.1, report_to="none", use_cpu=True, bf16=False,
                         per_device_train_batch_size=2)
    trainer = trl.DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_list(PAIRS),
                             processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    trainer.model.eval()
    expected = float(trainer.compute_loss(trainer.model, batch))
    logged = trainer._metrics["eval"]
    got = our_dpo(load(tiny_model_dir), reference, batch, 0.1, tokenizer)
    assert abs(expected - 0.6931) > 1e-3  # policy and reference differ: the loss is not log 2
    assert got["loss"] == pytest.approx(expected, abs=1e-5)
    assert got["rewards_chosen"] == pytest.approx(logged["rewards/chosen"][-1], abs=1e-5)
    assert got["rewards_margin"] == pytest.approx(logged["rewards/margins"][-1], abs=1e-5)
    assert got["rewards_accuracy"] == pytest.approx(logged["rewards/accuracies"][-1])


def test_dpo_loss_equals_the_formula_written_out(tiny_model_dir, reference_dir, tokenizer):
    import torch

    from tui_ft.engine.data import PreferencePair

    pairs = [PreferencePair(p["prompt"], p["chosen"], p["rejected"]) for p in PAIRS]
    objective = DPOObjective(pairs, tokenizer, "chat", 512, beta=0.5)
    batch = objective.collate([0, 1], "cpu")
    completion = (batch["labels"] != -100).long()
    policy, reference = load(tiny_model_dir), load(reference_dir)
    losses, chosen, rejected = direct_dpo_loss(policy, reference, batch["input_ids"], batch["attention_mask"],
                                               completion, beta=0.5)
    batch["completion_mask"] = completion
    got = our_dpo(policy, reference, batch, 0.5, tokenizer)
    assert got["loss"] == pytest.approx(float(losses.mean()), abs=1e-5)
    assert got["rewards_chosen"] == pytest.approx(float(chosen.mean()), abs=1e-5)
    assert got["rewards_rejected"] == pytest.approx(float(rejected.mean()), abs=1e-5)
    assert got["rewards_accuracy"] == float((chosen > rejected).float().mean())
    assert torch.all(completion.sum(-1) > 0)


class StopAfter:
    """A stop request that fires before step ``steps + 1``."""

    def __init__(self, steps: int):
        self.calls, self.steps = 0, steps

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > self.steps


def start(home: Path, model: Path, **values) -> Path:
    values = {"model": str(model), "dataset": DATASET, "method": "dpo", "lr": 5e-2, "batch_size": 8,
              "warmup_ratio": 0.0, "save_every": 0, "seed": 3} | values
    return create_run(TrainConfig(**values), home)


MLP_TOO = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"  # the tiny model needs the capacity


def test_dpo_lora_learns_the_preference_and_resumes_exactly(workspace, tiny_model_dir):
    # Evaluate on the training pairs at the end: before training every reward is 0 (accuracy 0).
    common = dict(max_steps=8, eval_dataset=DATASET, eval_every=8, lr=2e-2, lora_targets=MLP_TOO.split(","))
    straight = start(workspace, tiny_model_dir, name="straight", **common)
    assert train_run(straight) == "finished"
    records = read_metrics(straight)
    train = [r for r in records if r["kind"] == "train"]
    assert all({"rewards_chosen", "rewards_rejected", "rewards_margin", "rewards_accuracy"} <= set(r) for r in train)
    assert train[0]["loss"] == pytest.approx(0.693147, abs=1e-5)  # policy == reference at step 1
    [final] = [r for r in records if r["kind"] == "eval"]
    assert final["rewards_accuracy"] >= 0.8 and final["rewards_margin"] > 0.1, final
    assert (straight / "adapter" / "adapter_config.json").is_file() and (straight / REFERENCE_FILE).is_file()

    # Evaluation draws no random numbers: the resumed run skips it and must still match.
    resumed = start(workspace, tiny_model_dir, name="resumed", **(common | {"eval_dataset": None, "eval_split": 0.0}))
    assert train_run(resumed, StopAfter(4)) == "stopped"
    assert [p.name for p in list_checkpoints(resumed)] == ["step-4"]
    cached = (resumed / REFERENCE_FILE).stat().st_mtime_ns
    assert train_run(resumed) == "finished"
    assert (resumed / REFERENCE_FILE).stat().st_mtime_ns == cached  # the reference is computed once
    losses = [[r["loss"] for r in read_metrics(d) if r["kind"] == "train"] for d in (straight, resumed)]
    assert losses[1] == pytest.approx(losses[0], abs=1e-5)


def test_dpo_full_trains_every_weight_against_its_cached_reference(workspace, tiny_model_dir):
    run_dir = start(workspace, tiny_model_dir, dpo_mode="full", lr=3e-3, max_steps=3, eval_split=0.2)
    assert train_run(run_dir) == "finished"
    assert (run_dir / "model" / "model.safetensors").is_file() and not (run_dir / "adapter").exists()
    records = read_metrics(run_dir)
    assert records[0]["trainable_pct"] == 100.0
    assert (records[0]["examples"], records[0]["eval_examples"]) == (36, 9)
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals and "ppl" not in evals[-1] and evals[-1]["rewards_margin"] > 0
    assert read_status(run_dir)["state"] == "finished"
