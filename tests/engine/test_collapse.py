"""A collapsed run ends failed with the symptom in words, not finished (issue 19, item 8)."""

from __future__ import annotations

import math

import pytest

from tui_ft.engine.runs import create_run, read_metrics, read_status
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.training.collapse import PATIENCE, CollapseWatch

VOCAB = 49152


def feed(watch: CollapseWatch, steps: list[tuple[float, float]]) -> list[str | None]:
    return [watch.check(loss, grad) for loss, grad in steps]


def test_a_uniform_guess_with_no_gradient_is_a_collapse_after_a_few_steps():
    uniform = math.log(VOCAB)
    said = feed(CollapseWatch(VOCAB), [(2.5, 1.0)] + [(uniform, 0.0)] * PATIENCE)
    assert said[:-1] == [None] * PATIENCE and "guesses uniformly" in said[-1]


def test_a_loss_near_uniform_that_still_learns_is_not():
    uniform = math.log(VOCAB)
    assert feed(CollapseWatch(VOCAB), [(uniform, 0.5)] * 10) == [None] * 10  # a random model's start
    assert feed(CollapseWatch(None), [(uniform, 0.0)] * 10) == [None] * 10  # not a token loss (DPO)


def test_a_blow_up_is_a_collapse_and_noise_is_not():
    watch = CollapseWatch(VOCAB)
    noisy = [(2.0 + 0.5 * (i % 3), 1.0) for i in range(10)]
    assert feed(watch, noisy) == [None] * 10
    said = feed(watch, [(40.0, 5.0)] * PATIENCE)
    assert said[:-1] == [None] * (PATIENCE - 1) and "running median" in said[-1]
    small = CollapseWatch(VOCAB)
    assert feed(small, [(0.02, 1.0)] * 6 + [(0.1, 1.0)] * 5) == [None] * 11  # 5× a tiny loss, but 0.08 above it


@pytest.mark.e2e  # the default model: a tiny random one goes to NaN instead (caught as such)
def test_a_destroyed_model_ends_failed_with_the_symptom_and_advice(workspace):
    """``--lr 1e9`` on the default model: from step 3 the loss sits at ln(49152) = 10.8027 with a zero
    gradient norm; the run used to end ``finished after 20 steps``."""
    from tui_ft.engine.runs.worker import run_worker

    run_dir = create_run(TrainConfig(model="default", dataset="datasets/seed_instructions.jsonl", method="lora",
                                     lr=1e9, max_steps=20, batch_size=8, eval_split=0.0, save_every=0,
                                     warmup_ratio=0.0, name="boom"), workspace)
    assert run_worker(run_dir) == 1
    status = read_status(run_dir)
    assert status["state"] == "failed" and status["message"].startswith("diverged at step"), status
    assert "guesses uniformly" in status["message"] and "lower the learning rate" in status["message"]
    losses = [r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert len(losses) < 10 and losses[-1] == pytest.approx(math.log(VOCAB), abs=1e-3)
