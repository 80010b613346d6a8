"""The memory plan against the measured CUDA peak of a ~1.1B Llama-shaped model: within ±25 %.

Measured as the issue defines it: ``torch.cuda.max_memory_allocated`` plus the CUDA context,
in a fresh process per case (bench/memory_plan.py prints the whole table; these are the cases
a GPU check can afford).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_harness import build_billion_llama, measure_cuda_peak, write_long_dataset

pytestmark = pytest.mark.gpu

CASES = [  # method, max_length, gradient checkpointing
    ("lora", 1024, False), ("lora", 1024, True), ("lora", 128, False),
    ("qlora", 1024, False), ("full", 1024, False), ("full", 1024, True), ("freeze", 1024, False),
]


@pytest.fixture(scope="module")
def billion(tmp_path_factory) -> Path:
    return build_billion_llama(tmp_path_factory.mktemp("billion") / "model")


@pytest.mark.parametrize(("method", "length", "checkpointing"), CASES,
                         ids=[f"{m}-{n}-{'ckpt' if c else 'nockpt'}" for m, n, c in CASES])
def test_the_plan_is_within_a_quarter_of_the_measured_peak(tmp_path, billion, method, length, checkpointing):
    plan_module = pytest.importorskip("tui_ft.engine.runs.memory_plan")
    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    from tui_ft.engine.runs import create_run
    from tui_ft.engine.runs.config import TrainConfig

    (tmp_path / "checkpoints").mkdir()
    dataset = write_long_dataset(tmp_path / "long.jsonl")
    config = TrainConfig(model=str(billion), dataset=str(dataset), method=method, name="planned", batch_size=2,
                         max_length=length, max_steps=2, eval_split=0.0, save_every=0, template="alpaca", device="cuda",
                         gradient_checkpointing=checkpointing, ignore_memory_plan=True)
    run_dir = create_run(config, tmp_path)
    planned = plan_module.plan_memory(config, billion, capacity=None).peak_bytes
    measured = measure_cuda_peak(run_dir)["peak"]
    assert 0.75 * measured <= planned <= 1.25 * measured, (
        f"{method} at {length}{' with checkpointing' if checkpointing else ''}: planned {planned / 2**30:.2f} GiB, "
        f"measured {measured / 2**30:.2f} GiB")
