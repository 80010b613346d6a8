"""A run that cannot go on ends ``failed`` with a message a user can act on, and keeps its last good
checkpoint: a full disk while checkpointing, a non-finite loss, out of memory.

The faults are injected in-process (the worker's ``run_worker`` on a tiny model) by patching
the function that writes, or the objective's forward at a chosen step.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
import torch

from tui_ft.engine.runs import list_checkpoints, read_metrics, read_status
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.worker import run_worker
from tui_ft.engine.training.objective import StepOutput
from tui_ft.engine.training.sft import SFTObjective
from tui_ft.engine.training.trainer import oom_advice

from report import Section
from workers import checkpoint_contents, new_run, one_thread, train_steps  # noqa: F401

FAIL_AT = 3  # the step whose forward is made to fail
FORWARD_FAULTS = {
    "nan": "loss NaN",
    "inf": "loss +inf",
    "cuda-oom": "torch.OutOfMemoryError (CUDA)",
    "cpu-oom": "a real CPU allocation failure (2^48 bytes)",
}

SECTION = Section(
    "failures",
    "Failures during a run",
    [
        "Written by `tests/reliability/test_run_failures.py` (tiny model, in-process worker, a checkpoint every step or two).",
        "Each fault is injected once, at a fixed step; the outcome column is what the test asserts.",
    ],
    ["fault", "trials", "outcome"],
    ["disk-full", "disk-full-resume", *FORWARD_FAULTS],
)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    SECTION.write_if_complete()


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(workspace, tiny_model_dir, one_thread, monkeypatch):
    run_dir = new_run(workspace, tiny_model_dir, method="full", lr=1e-3, max_steps=6, save_every=2)
    real_save = torch.save
    seen = {}

    def save_on_a_full_disk(obj, path, *args, **kwargs):
        if ".tmp-step-4-" in str(path) and str(path).endswith("optimizer.pt"):
            seen["before"] = digest(run_dir / "ckpt" / "step-2")
            with open(path, "wb") as file:  # half a file, then the disk is full
                file.write(b"\x80\x02" * 1024)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    assert run_worker(run_dir) == 1
    status = read_status(run_dir)
    assert status["state"] == "failed"
    message = status["message"]
    assert "No space left on device" in message and "step-2" in message and "at step 4" in message, message
    assert "free" in message and "resume" in message, message  # what to do about it
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-2"]
    assert digest(run_dir / "ckpt" / "step-2") == seen["before"]  # the previous checkpoint is untouched
    checkpoint_contents(run_dir / "ckpt" / "step-2")
    assert sorted(p.name for p in (run_dir / "ckpt").iterdir()) == ["step-2"]  # the half-written one is gone
    assert not (run_dir / "model").exists()
    assert read_metrics(run_dir)[-1]["event"] == "failed"
    SECTION.add("disk-full", "disk full (ENOSPC) while writing a checkpoint", 1,
                f"`failed`: \"{message}\"; step-2 byte-identical and loadable; the half-written checkpoint removed")

    monkeypatch.setattr(torch, "save", real_save)  # space freed: resume from step-2
    assert run_worker(run_dir) == 0
    status = read_status(run_dir)
    assert (status["state"], status["step"]) == ("finished", 6)
    assert train_steps(run_dir) == list(range(1, 7))
    SECTION.add("disk-full-resume", "resume once space is free", 1, "`finished` from step-2; steps 1-6 logged once each")


def failing_forward(kind: str):
    """SFTObjective.forward that fails at step ``FAIL_AT`` (one micro-batch a step) the way ``kind`` says."""
    real = SFTObjective.forward
    calls = {"n": 0}

    def forward(self, model, batch):
        calls["n"] += 1
        output = real(self, model, batch)
        if calls["n"] != FAIL_AT:
            return output
        if kind in ("nan", "inf"):
            bad = float(kind)
            return StepOutput(output.loss_sum * bad, dict(output.stats, nll=bad))
        if kind == "cuda-oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        torch.empty(2**46, dtype=torch.float32)  # 2^48 bytes: more than any address space holds
        raise AssertionError("the allocation should have failed")

    return forward


@pytest.mark.parametrize("kind", list(FORWARD_FAULTS))
def test_a_failing_step_fails_the_run_with_advice_and_keeps_the_last_checkpoint(workspace, tiny_model_dir, one_thread,
                                                                              monkeypatch, kind):
    run_dir = new_run(workspace, tiny_model_dir, method="lora", lr=1e-2, max_steps=6, save_every=1)
    monkeypatch.setattr(SFTObjective, "forward", failing_forward(kind))
    assert run_worker(run_dir) == 1
    status = read_status(run_dir)
    message = status["message"]
    assert status["state"] == "failed", status
    assert f"at step {FAIL_AT}" in message and f"step-{FAIL_AT - 1}" in message, message
    if kind in ("nan", "inf"):
        assert f"the loss became {float(kind)}" in message, message
    else:
        assert message.startswith("out of memory") and "--batch-size" in message and "--max-length" in message, message
        assert "--method lora" not in message, message  # a LoRA run is not told to use LoRA
    assert [p.name for p in list_checkpoints(run_dir)] == [f"step-{FAIL_AT - 2}", f"step-{FAIL_AT - 1}"]
    for folder in list_checkpoints(run_dir):
        checkpoint_contents(folder)
    assert train_steps(run_dir) == list(range(1, FAIL_AT))  # no record for the failed step
    assert not (run_dir / "adapter").exists()
    assert read_metrics(run_dir)[-1]["event"] == "failed"
    SECTION.add(kind, f"{FORWARD_FAULTS[kind]} at step {FAIL_AT}", 1,
                f"`failed`: \"{message}\"; checkpoints step-1 and step-2 kept and loadable")


@pytest.mark.parametrize(("method", "dpo_mode", "advises_lora"),
                         [("full", "lora", True), ("freeze", "lora", True), ("dpo", "full", True),
                          ("lora", "lora", False), ("dpo", "lora", False)])
def test_out_of_memory_advice_names_lora_only_to_runs_that_train_every_weight(method, dpo_mode, advises_lora):
    trainer = type("Trainer", (), {"config": TrainConfig(method=method, dpo_mode=dpo_mode)})()
    advice = oom_advice(trainer)
    assert advice.startswith("out of memory: try a smaller --batch-size or a shorter --max-length")
    assert ("--method lora" in advice) == advises_lora, advice

