"""The run a config makes of its dataset, counted before launch as the trainer counts it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui_ft.engine.data import load_dataset, sft_examples
from tui_ft.engine.data.splits import split_eval, steps_per_epoch
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.run_shape import run_shape
from tui_ft.views.formatting import format_estimate
from tui_ft.views.run_summary import shape_line

DATASETS = Path("datasets")


def test_split_and_steps_match_the_trainers_arithmetic():
    config = TrainConfig(dataset="x", batch_size=3, grad_accum=2, epochs=2, eval_split=0.2, seed=7)
    shape = run_shape(config, DATASETS / "seed_instructions_20.jsonl")
    train, held = split_eval(20, 0.2, 7)
    assert (shape.examples, shape.trained, shape.held_out) == (20, len(train), len(held)) == (20, 16, 4)
    assert shape.steps_per_epoch == steps_per_epoch(16, 3, 2) == 3  # 6 batches, 2 a step
    assert shape.total_steps == 6 and not shape.held_from_file
    assert shape_line(shape) == "20 examples: 16 trained, 4 held out · 3 steps an epoch · 6 steps (2 epochs)"


def test_an_eval_file_is_held_out_whole_and_small_sets_hold_nothing_out():
    config = TrainConfig(dataset="x", batch_size=8, epochs=1)
    shape = run_shape(config, DATASETS / "seed_instructions.jsonl", DATASETS / "seed_instructions_20.jsonl")
    assert (shape.trained, shape.held_out, shape.held_from_file) == (8, 20, True)
    assert "20 held out from the eval file" in shape_line(shape)
    alone = run_shape(config, DATASETS / "seed_instructions.jsonl")  # fewer than 10: every example trains
    assert (alone.trained, alone.held_out) == (8, 0) and "none held out" in shape_line(alone)
    assert shape_line(alone).startswith("8 examples: 8 trained, none held out · 1 step an epoch · 1 step (1 epoch)")


def test_tokens_follow_the_examples_and_a_preference_pair_counts_both_replies():
    config = TrainConfig(dataset="x", batch_size=4, epochs=1, eval_split=0.0, max_length=4096)
    sft = run_shape(config, DATASETS / "seed_instructions_20.jsonl")
    chars = sum(len("".join(m["content"] for m in e.messages).encode()) + len(e.input.encode())
                for e in sft_examples(load_dataset(DATASETS / "seed_instructions_20.jsonl")))
    assert chars / 4 < sft.tokens < chars / 4 + 40 * 20  # bytes / 4, plus the template's tokens
    twice = run_shape(TrainConfig(dataset="x", batch_size=4, epochs=2, eval_split=0.0, max_length=4096),
                      DATASETS / "seed_instructions_20.jsonl")
    assert twice.tokens == 2 * sft.tokens
    dpo = TrainConfig(dataset="x", method="dpo", batch_size=4, epochs=1, eval_split=0.0, max_length=4096)
    pairs = run_shape(dpo, DATASETS / "dpo_concise.jsonl")
    records = load_dataset(DATASETS / "dpo_concise.jsonl").records
    replies = sum(len(p.chosen.encode()) + len(p.rejected.encode()) + 2 * len(p.prompt.encode()) for p in records)
    assert replies / 4 < pairs.tokens < replies / 4 + 2 * 40 * len(records)
    short = run_shape(TrainConfig(dataset="x", batch_size=4, epochs=1, eval_split=0.0, max_length=16),
                      DATASETS / "seed_instructions_20.jsonl")
    assert short.tokens <= 16 * 20  # each example is cut at max_length


def test_time_comes_from_the_latest_earlier_run_of_the_same_model_method_and_device(tmp_path):
    def earlier(name: str, method: str, started: float, speeds: list[float], model: str = "default") -> None:
        run_dir = tmp_path / "checkpoints" / name
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps({"name": name, "model": model, "method": method,
                                                      "dataset": "d.jsonl"}))
        (run_dir / "status.json").write_text(json.dumps({"state": "finished", "started": started, "step": len(speeds)}))
        lines = [{"kind": "train", "step": step, "tokens_per_s": speed} for step, speed in enumerate(speeds, 1)]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    earlier("old", "lora", 100.0, [5.0, 100.0, 100.0, 100.0])
    earlier("new", "lora", 200.0, [1.0, 200.0, 180.0, 220.0, 190.0])  # the first step (warm-up) is left out
    earlier("other-method", "full", 300.0, [9.0, 9.0, 9.0])
    earlier("other-model", "lora", 400.0, [9.0, 9.0, 9.0], model="HuggingFaceTB/SmolLM2-360M")
    config = TrainConfig(dataset="x", model="default", method="lora", batch_size=4, epochs=1, eval_split=0.0)
    shape = run_shape(config, DATASETS / "seed_instructions_20.jsonl", home=tmp_path)
    assert shape.speed.run == "new" and shape.speed.tokens_per_s == pytest.approx(195.0)
    assert shape.seconds == pytest.approx(shape.tokens / 195.0)
    assert shape_line(shape).endswith(f"≈ {format_estimate(shape.seconds)} at 195 tokens/s (as new)")
    alone = run_shape(TrainConfig(dataset="x", method="qlora", epochs=1), DATASETS / "seed_instructions_20.jsonl",
                      home=tmp_path)
    assert alone.speed is None and "≈" not in shape_line(alone)


def test_duration_reads_at_an_estimates_precision():
    assert [format_estimate(s) for s in (0.2, 40, 89, 600, 5399, 5400, 12_600)] == ["1 s", "40 s", "89 s", "10 min", "90 min",
                                                                           "1.5 h", "3.5 h"]
