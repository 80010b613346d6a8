"""Renaming a run: the folder, run.json's name and its stored scores move together; unsafe renames change nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tui_ft.engine.evaluation import default_settings, evaluate, load_results, model_session
from tui_ft.engine.evaluation.run_rename import rename_run
from tui_ft.engine.evaluation.store import identity_of, result_key
from tui_ft.engine.models import list_models
from tui_ft.engine.runs import RunError
from tui_ft.views.bench_table import model_identity


def full_run(home: Path, name: str, model_dir: Path, state: str = "finished", **config) -> Path:
    """A finished full fine-tuning run whose final weights are ``model_dir``'s."""
    run_dir = home / "checkpoints" / name
    shutil.copytree(model_dir, run_dir / "model")
    values = {"name": name, "model": str(model_dir), "model_path": str(model_dir), "method": "full",
              "template": "alpaca", "dataset": str(home / "datasets" / "seed_instructions.jsonl"), "created": 1.0}
    (run_dir / "run.json").write_text(json.dumps(values | config))
    (run_dir / "status.json").write_text(json.dumps({"state": state, "pid": None, "step": 4, "total_steps": 4}))
    return run_dir


def test_a_renamed_runs_scores_follow_it_and_are_not_computed_again(workspace, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(workspace)
    old = full_run(workspace, "typo-nmae", tiny_model_dir)
    settings = default_settings(2)
    scored = evaluate("typo-nmae", workspace, benchmark="datasets/seed_benchmark.jsonl", settings=settings)
    measured = evaluate("typo-nmae", workspace, perplexity_path="datasets/seed_instructions_20.jsonl")
    assert scored["cached"] is False and measured["cached"] is False
    for record in (scored, measured):  # the store's reading of a record's identity is evaluate's
        assert result_key(identity_of(record)) == record["key"]

    new = rename_run(old, "full-tiny", workspace)

    assert new == workspace / "checkpoints" / "full-tiny" and not old.exists()
    assert json.loads((new / "run.json").read_text())["name"] == "full-tiny"
    stored = load_results(workspace)
    assert sorted(r["kind"] for r in stored) == ["benchmark", "perplexity"]
    listed = next(m for m in list_models(workspace) if m["ref"] == "full-tiny")
    assert {r["model"] for r in stored} == {"full-tiny"}
    assert {r["model_id"] for r in stored} == {model_identity(listed, workspace)}  # the Benchmark row of the run
    assert all(Path(r["file"]).parent == new / "bench" and result_key(identity_of(r)) == r["key"] for r in stored)
    assert len(list((new / "bench").glob("*.json"))) == 2  # the files under the old keys are gone
    with monkeypatch.context() as patch:
        patch.setattr(model_session, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
        again = evaluate("full-tiny", workspace, benchmark="datasets/seed_benchmark.jsonl", settings=settings)
    assert again["cached"] is True and again["score"] == scored["score"]


def test_unsafe_renames_are_refused_and_change_nothing(workspace, tiny_model_dir):
    base = full_run(workspace, "base", tiny_model_dir)
    full_run(workspace, "other", tiny_model_dir)
    before = sorted(p.name for p in (workspace / "checkpoints").iterdir())
    cases = [
        ("../escape", "is not a safe run name"),
        ("a b", "is not a safe run name"),
        ("other", "a run named 'other' already exists"),
    ]
    for name, message in cases:
        with pytest.raises(RunError, match=message):
            rename_run(base, name, workspace)
    # A run trained on it names it in its run.json: renamed, that run would lose its base model.
    full_run(workspace, "child", tiny_model_dir, model="base", model_path=str(base / "model"))
    with pytest.raises(RunError, match="base cannot be renamed: child trained on it"):
        rename_run(base, "renamed", workspace)
    assert sorted(p.name for p in (workspace / "checkpoints").iterdir()) == sorted(before + ["child"])
    assert json.loads((base / "run.json").read_text())["name"] == "base"


def test_a_run_with_a_live_worker_is_not_renamed(workspace, tiny_model_dir):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        run = full_run(workspace, "live", tiny_model_dir, state="running")
        (run / "status.json").write_text(json.dumps({"state": "running", "pid": sleeper.pid, "step": 1}))
        with pytest.raises(RunError, match="live is running: stop it first"):
            rename_run(run, "renamed", workspace)
        assert run.is_dir() and not (workspace / "checkpoints" / "renamed").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_cli_renames_and_filters_runs(workspace, tiny_model_dir):
    full_run(workspace, "lora-veloria", tiny_model_dir, method="lora")
    full_run(workspace, "dpo-concise", tiny_model_dir, method="dpo",
             dataset=str(workspace / "datasets" / "dpo_concise.jsonl"))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "tui_ft", "--home", str(workspace), *args],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)

    listed = cli("runs", "--json", "--filter", "DPO")
    assert listed.returncode == 0 and [r["name"] for r in json.loads(listed.stdout)] == ["dpo-concise"]
    none = cli("runs", "--filter", "veloria dpo")
    assert none.returncode == 0 and none.stdout.startswith("no runs matching 'veloria dpo' in ")
    renamed = cli("runs", "rename", "lora-veloria", "lora-veloria-r8")
    assert renamed.returncode == 0 and renamed.stdout.strip().endswith("to lora-veloria-r8")
    assert (workspace / "checkpoints" / "lora-veloria-r8" / "run.json").is_file()
    taken = cli("runs", "rename", "lora-veloria-r8", "dpo-concise")
    assert taken.returncode != 0 and taken.stdout == ""
    assert taken.stderr.strip() == "tui-ft: a run named 'dpo-concise' already exists"
