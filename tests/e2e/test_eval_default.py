"""The default model on the seed's benchmark, through the CLI, as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest


@pytest.mark.e2e
def test_default_model_scores_the_seed_benchmark(workspace, default_model_path):
    command = [sys.executable, "-m", "tui_ft", "--home", str(workspace), "eval", "default",
               "--benchmark", "datasets/seed_benchmark.jsonl", "--max-new-tokens", "16", "--json"]
    done = subprocess.run(command, cwd=workspace, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [record] = orjson.loads(done.stdout)["results"]
    assert record["model"] == "default" and record["benchmark"] == "datasets/seed_benchmark.jsonl"
    assert record["n"] == 5 and len(record["items"]) == 5 and 0.0 <= record["score"] <= 1.0
    assert record["score"] == sum(item["correct"] for item in record["items"]) / 5
    for item in record["items"]:
        assert item["correct"] == (item["expected"].lower() in item["reply"].lower())
    # SmolLM2-135M-Instruct answers these (measured: 5/5 with greedy decoding).
    assert record["score"] >= 0.6, record["items"]
    assert (workspace / "bench" / "default").is_dir()
