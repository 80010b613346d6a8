"""Bytes per parameter for each method and weight storage, and the held-out loss it costs.

Part 1 builds each run through the engine (``Trainer.setup``), takes one optimizer step, and
counts the bytes of what the run holds: weights (by dtype; 4-bit weights with their
quantisation constants), gradients (one per trained weight, in its dtype) and AdamW's state.
Divided by the model's parameter count, that is the table in the README.

Part 2 trains LoRA on the default model with ``weight_dtype=auto`` (frozen weights bf16) and
``float32`` side by side, same seed and data, and prints the held-out loss of each and the
median step time.

    .venv/bin/python bench/weight_storage.py            # both parts
    .venv/bin/python bench/weight_storage.py --part 1
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import describe_machine  # noqa: E402

CASES = [  # (method, weight_dtype, extra settings)
    ("lora", "float32", {}),
    ("lora", "auto", {}),
    ("qlora", "auto", {}),
    ("freeze", "float32", {}),
    ("freeze", "auto", {}),
    ("full", "auto", {}),
    ("full", "bfloat16", {}),
    ("dpo", "auto", {"dataset": "datasets/dpo_concise.jsonl"}),
]


def tensor_bytes(tensor) -> int:
    return tensor.numel() * tensor.element_size()


def weight_bytes(param) -> int:
    """A parameter's bytes; a 4-bit one adds its quantisation constants (absmax, nested absmax, code)."""
    total = tensor_bytes(param.data)
    state = getattr(param, "quant_state", None)
    if state is not None:
        for value in vars(state).values():
            if hasattr(value, "element_size"):
                total += tensor_bytes(value)
            elif hasattr(value, "absmax"):  # the nested state of double quantisation
                total += sum(tensor_bytes(v) for v in vars(value).values() if hasattr(v, "element_size"))
    return total


def measure(home: Path, method: str, weight_dtype: str, extra: dict) -> dict:
    import torch

    from tui_ft.engine.runs import create_run
    from tui_ft.engine.runs.config import TrainConfig
    from tui_ft.engine.training.methods import count_params
    from tui_ft.engine.training.trainer import Trainer

    values = {"model": "default", "dataset": "datasets/seed_instructions.jsonl", "method": method,
              "weight_dtype": weight_dtype, "max_steps": 1, "batch_size": 2, "max_length": 128, "eval_split": 0.0,
              "save_every": 0, "name": f"{method}-{weight_dtype}"} | extra
    trainer = Trainer(create_run(TrainConfig(**values), home))
    trainer.setup()
    trainer._train_step()
    model, optimizer = trainer.model, trainer.optimizer
    params = list(model.parameters())
    counts = count_params(model)
    weights = sum(weight_bytes(p) for p in params)
    grads = sum(tensor_bytes(p.data) for p in params if p.requires_grad)  # a gradient per trained weight, its dtype
    states = sum(tensor_bytes(v) for state in optimizer.state.values() for v in state.values()
                 if torch.is_tensor(v) and v.dim() > 0)
    base = counts.total - (counts.trainable if trainer.config.uses_lora else 0)  # adapters come on top
    return {"method": method, "weight_dtype": weight_dtype, "params": base, "trainable": counts.trainable,
            "weights": weights, "grads": grads, "optimizer": states, "precision": trainer.precision}


def part_one() -> None:
    print("Part 1: bytes per base-model parameter after one optimizer step (default model, SmolLM2-135M)")
    print(f"{'method':8} {'weights':9} {'compute':7} {'weights':>8} {'grads':>6} {'adam':>6} {'total':>6}")
    for method, weight_dtype, extra in CASES:
        home = Path(tempfile.mkdtemp(prefix="tui_ft_bpp_"))
        shutil.copytree(REPO / "datasets", home / "datasets")
        try:
            row = measure(home, method, weight_dtype, extra)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        n = row["params"]
        per = [row["weights"] / n, row["grads"] / n, row["optimizer"] / n]
        print(f"{method:8} {weight_dtype:9} {row['precision']:7} {per[0]:8.2f} {per[1]:6.2f} {per[2]:6.2f} "
              f"{sum(per):6.2f}", flush=True)


def part_two(steps: int) -> None:
    from tui_ft.engine.runs import create_run, read_metrics
    from tui_ft.engine.runs.config import TrainConfig
    from tui_ft.engine.training.trainer import train_run

    print(f"\nPart 2: LoRA on the default model, {steps} steps, demo_veloria.jsonl (60 examples, 12 held out)")
    home = Path(tempfile.mkdtemp(prefix="tui_ft_bpp_"))
    shutil.copytree(REPO / "datasets", home / "datasets")
    try:
        for weight_dtype in ("float32", "auto"):
            run_dir = create_run(TrainConfig(model="default", dataset="datasets/demo_veloria.jsonl", method="lora",
                                             weight_dtype=weight_dtype, max_steps=steps, batch_size=8, eval_split=0.2,
                                             eval_every=steps, save_every=0, seed=5, name=weight_dtype), home)
            assert train_run(run_dir) == "finished"
            records = read_metrics(run_dir)
            train = [r for r in records if r["kind"] == "train"]
            held_out = [r["loss"] for r in records if r["kind"] == "eval"]
            print(f"weight_dtype={weight_dtype:8} held-out loss {held_out[-1]:.4f}  "
                  f"last train loss {train[-1]['loss']:.4f}  median step {statistics.median(r['step_time'] for r in train):.2f} s",
                  flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", type=int, choices=(1, 2))
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(describe_machine())
    if args.part in (None, 1):
        part_one()
    if args.part in (None, 2):
        part_two(args.steps)


if __name__ == "__main__":
    main()
