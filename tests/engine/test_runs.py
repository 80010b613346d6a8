"""Run folders without training: config, validation, status, metrics tailing, and CLI refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tui_ft.cli import main
from tui_ft.engine.files import write_json_atomic
from tui_ft.engine.runs import create_run, list_checkpoints, list_runs, read_metrics, read_status, stop_run
from tui_ft.engine.runs.config import ConfigError, TrainConfig, method_defaults
from tui_ft.engine.runs.config_checks import validate_config
from tui_ft.engine.runs.folder import MetricsTail, MetricsWriter, merge_records, update_status


def test_config_round_trips_and_converts_strings():
    config = TrainConfig.from_dict({"method": "full", "lr": "1e-4", "lora_targets": "q_proj, v_proj",
                                    "train_on_prompt": "true", "max_steps": "12", "eval_dataset": ""})
    assert (config.lr, config.lora_targets, config.train_on_prompt, config.max_steps) == (1e-4, ["q_proj", "v_proj"], True, 12)
    assert config.eval_dataset is None
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig(method="full").resolved().lr == method_defaults("full")["lr"] < method_defaults("lora")["lr"]
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict({"lr": "fast", "colour": "red"})
    assert [name for name, _ in error.value.errors] == ["colour"]
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict({"lr": "fast", "batch_size": "2.5"})
    assert [name for name, _ in error.value.errors] == ["lr", "batch_size"]


def fields(errors) -> set[str]:
    return {name for name, _ in errors}


def test_validation_names_each_bad_field_without_loading_weights(workspace, tiny_model_dir):
    good = TrainConfig(model=str(tiny_model_dir), dataset="datasets/seed_instructions.jsonl")
    assert validate_config(good, workspace) == []
    bad = TrainConfig(model=str(tiny_model_dir), dataset="datasets/seed_instructions.jsonl", lr=-1.0, lora_rank=0,
                      batch_size=0, name="../x", max_length=4096, nproc=0)
    assert fields(validate_config(bad, workspace)) == {"lr", "lora_rank", "batch_size", "name", "max_length", "nproc"}
    assert "512" in dict(validate_config(bad, workspace))["max_length"]  # the tiny model's limit is named
    checks = [
        (TrainConfig(model="no-such-model", dataset="datasets/seed_instructions.jsonl"), "model"),
        (TrainConfig(model=str(tiny_model_dir), dataset="datasets/missing.jsonl"), "dataset"),
        (TrainConfig(model=str(tiny_model_dir), dataset="datasets/seed_instructions.jsonl", method="dpo"), "dataset"),
        (TrainConfig(model=str(tiny_model_dir), dataset="datasets/seed_instructions.jsonl", method="freeze",
                     freeze_layers=3), "freeze_layers"),
        (TrainConfig(model=str(tiny_model_dir), dataset="datasets/seed_instructions.jsonl", lr=float("nan")), "lr"),
    ]
    for config, field in checks:
        assert fields(validate_config(config, workspace)) == {field}, config
    with pytest.raises(ConfigError):
        create_run(bad, workspace)
    assert list((workspace / "checkpoints").iterdir()) == []


def test_cli_refuses_bad_values_before_any_run_folder(workspace, tiny_model_dir, capsys):
    base = ["--home", str(workspace), "train", "--model", str(tiny_model_dir), "--method", "lora"]
    assert main(base + ["--dataset", "datasets/seed_instructions.jsonl", "--lr", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "tui-ft: lr: must be a positive number, got -1.0"
    assert main(base + ["--dataset", "datasets/seed_instructions.jsonl", "--name", "../x"]) == 2
    assert main(base + ["--dataset", "datasets/seed_instructions.jsonl", "--set", "nonsense=1"]) == 2
    capsys.readouterr()
    broken = workspace / "broken.jsonl"
    broken.write_text('{"instruction": "hi", "response": "hello"}\n{"instruction": "no reply"}\n')
    assert main(base + ["--dataset", str(broken)]) == 1
    assert capsys.readouterr().err.strip() == f"tui-ft: {broken}:2: missing field 'response' or 'output' or 'completion'"
    assert list((workspace / "checkpoints").iterdir()) == []
    assert main(["--home", str(workspace), "runs", "stop", "nope"]) == 2
    assert main(["--home", str(workspace), "runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_metrics_tail_waits_for_a_torn_line_and_reads_only_new_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read_new() == []  # no file yet
    path.write_bytes(b'{"kind":"train","step":1,"loss":2.0}\n{"kind":"train","st')
    assert [r["step"] for r in tail.read_new()] == [1]
    assert tail.read_new() == []  # the torn line is not read until it is complete
    with open(path, "ab") as file:
        file.write(b'ep":2,"loss":1.5}\n')
    assert [r["loss"] for r in tail.read_new()] == [1.5]
    # A writer that died mid-line: the next writer starts on a fresh line, the fragment is skipped.
    with open(path, "ab") as file:
        file.write(b'{"kind":"tra')
    writer = MetricsWriter(path)
    writer.log("train", 3, 0.5, loss=1.0)
    writer.close()
    assert [r["step"] for r in tail.read_new()] == [3]
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]


def test_resumed_event_drops_the_steps_logged_after_the_checkpoint():
    history = [{"kind": "train", "step": s} for s in (1, 2, 3, 4)] + [{"kind": "eval", "step": 4}]
    resumed = [{"kind": "event", "event": "resumed", "step": 2}, {"kind": "train", "step": 3}]
    merged = merge_records(history, resumed)
    assert [(r["kind"], r["step"]) for r in merged] == [("train", 1), ("train", 2), ("event", 2), ("train", 3)]


def test_a_live_status_whose_worker_is_gone_reads_died(workspace):
    run_dir = workspace / "checkpoints" / "ghost"
    run_dir.mkdir()
    write_json_atomic(run_dir / "run.json", {"method": "lora", "model": "default", "dataset": "d.jsonl", "created": 1.0})
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    update_status(run_dir, state="queued", pid=None, step=0)
    assert read_status(run_dir)["state"] == "queued"  # never launched: not dead
    update_status(run_dir, state="running", pid=gone.pid, step=5, total_steps=10)
    status = read_status(run_dir)
    assert status["state"] == "died" and str(gone.pid) in status["message"]
    assert stop_run(run_dir) is False  # nothing to stop
    update_status(run_dir, state="finished")
    assert read_status(run_dir)["state"] == "finished"
    [info] = list_runs(workspace)
    assert (info.name, info.state, info.step, info.total_steps, info.method) == ("ghost", "finished", 5, 10, "lora")


def test_checkpoints_sort_by_step_and_skip_unfinished_ones(tmp_path):
    for name in ("step-10", "step-9", ".tmp-step-11-123", "step-x"):
        (tmp_path / "ckpt" / name).mkdir(parents=True)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-9", "step-10"]
    assert list_checkpoints(tmp_path / "nowhere") == []


def test_run_names_refused_when_unsafe_or_taken(workspace, tiny_model_dir):
    (workspace / "checkpoints" / "taken").mkdir()
    for name, ok in (("taken", False), ("a/b", False), (".hidden", False), ("..", False), ("run-1.b_c", True)):
        config = TrainConfig(model=str(tiny_model_dir), dataset="datasets/seed_instructions.jsonl", name=name)
        assert ("name" in fields(validate_config(config, workspace))) != ok, name


def test_create_run_records_the_resolved_config(workspace, tiny_model_dir):
    config = TrainConfig(model=str(tiny_model_dir), dataset="seed_instructions.jsonl", method="freeze")
    run_dir = create_run(config, workspace)
    record = json.loads((run_dir / "run.json").read_text())
    assert run_dir.parent == workspace / "checkpoints" and run_dir.name.startswith("freeze-seed_instructions-")
    assert Path(record["dataset"]) == (workspace / "datasets" / "seed_instructions.jsonl").resolve()
    assert (record["template"], record["lr"], record["model"]) == ("chat", method_defaults("freeze")["lr"], str(tiny_model_dir))
    assert read_status(run_dir)["state"] == "queued"
