"""Activation checkpointing changes memory, never the numbers: the same losses with it as without.

fp32 weights on the CPU, ten steps, every method (and two processes under DDP in
``test_distributed.py``): recomputing a layer in the backward pass replays its dropout masks from
the saved random state, so each loss matches to 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_ft.engine.runs import create_run, read_metrics
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.training.trainer import train_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


METHODS = {
    "lora": {"lr": 5e-2, "lora_dropout": 0.1},  # dropout: masks drawn inside the recomputed layers
    "full": {"lr": 1e-2},
    "freeze": {"lr": 1e-2, "freeze_layers": 1},
    "dpo": {"lr": 2e-2, "dataset": "datasets/dpo_concise.jsonl", "lora_dropout": 0.1},
    "dpo-full": {"method": "dpo", "dpo_mode": "full", "lr": 3e-3, "dataset": "datasets/dpo_concise.jsonl"},
}


def losses(home: Path, model: Path, name: str, values: dict) -> list[float]:
    config = {"model": str(model), "dataset": "datasets/seed_instructions.jsonl", "eval_split": 0.0, "save_every": 0,
              "seed": 11, "max_steps": 10, "batch_size": 4, "warmup_ratio": 0.0, "weight_dtype": "float32",
              "name": name} | values
    run_dir = create_run(TrainConfig(**config), home)
    assert train_run(run_dir) == "finished"
    return [r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_checkpointing_gives_the_same_losses_for_every_method(workspace, tiny_model_dir, method):
    values = {"method": method} | METHODS[method]
    plain = losses(workspace, tiny_model_dir, f"{method}-plain", values)
    checkpointed = losses(workspace, tiny_model_dir, f"{method}-ckpt", values | {"gradient_checkpointing": True})
    assert len(plain) == 10 and plain[-1] < plain[0]  # it trains: the comparison means something
    assert checkpointed == pytest.approx(plain, abs=1e-5, rel=0)


def test_checkpointing_is_on_in_the_trained_model(workspace, tiny_model_dir):
    from tui_ft.engine.training.methods import build_model

    run_dir = create_run(TrainConfig(model=str(tiny_model_dir), dataset="datasets/seed_instructions.jsonl",
                                     gradient_checkpointing=True, name="on"), workspace)
    from tui_ft.engine.runs.record import RunRecord

    model = build_model(RunRecord.read(run_dir), "cpu")
    base = model.get_base_model()
    assert base.is_gradient_checkpointing
    layers = base.model.layers
    assert all(getattr(layer, "gradient_checkpointing", False) for layer in layers)
