"""End to end through the CLI: three LoRA steps on the default model, losses read back from metrics.jsonl."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui_ft.engine.models import resolve_model
from tui_ft.engine.runs import read_metrics

pytestmark = pytest.mark.e2e
TUI_FT = Path(sys.executable).with_name("tui-ft")


def test_three_lora_steps_on_the_default_model_lower_the_loss(workspace, default_model_path):
    command = [str(TUI_FT), "--home", str(workspace), "train", "--model", "default", "--method", "lora",
               "--dataset", "datasets/seed_instructions.jsonl", "--max-steps", "3", "--name", "e2e"]
    env = dict(os.environ, COLUMNS="100")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    run_dir = workspace / "checkpoints" / "e2e"
    assert done.stdout.splitlines()[0] == str(run_dir)
    assert "trainable: 921,600" in done.stderr  # rank-8 LoRA on q/k/v/o of SmolLM2-135M
    train = [r for r in read_metrics(run_dir) if r["kind"] == "train"]
    losses = [r["loss"] for r in train]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    # Eight examples in one batch of eight: each step sees the same batch, so the loss must fall.
    assert losses[0] > losses[1] > losses[2], losses
    assert 0.5 < losses[0] < 4.0  # an instruction-tuned model already knows these replies
    assert all(r["tokens"] > 0 and r["step_time"] > 0 for r in train)
    assert "Warning" not in (run_dir / "worker.log").read_text()  # peft's FutureWarning read like a problem with the run
    listed = subprocess.run([str(TUI_FT), "--home", str(workspace), "runs", "--json"], capture_output=True, text=True)
    [run] = json.loads(listed.stdout)
    assert (run["name"], run["state"], run["step"], run["total_steps"]) == ("e2e", "finished", 3, 3)
    resolved = resolve_model("e2e", workspace)
    assert resolved.adapter == run_dir / "adapter" and resolved.path == default_model_path
