"""RunRecord: run.json read as one typed record and written back unchanged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tui_ft.cli import main
from tui_ft.engine.files import write_json_atomic
from tui_ft.engine.models import ModelError
from tui_ft.engine.runs import create_run, read_status
from tui_ft.engine.runs.config import ConfigError, TrainConfig
from tui_ft.engine.runs.record import RunRecord

BESIDE = ["model_path", "base_adapter", "model_revision", "created", "versions"]  # what create_run adds to the config

# A run.json as an older tui-ft wrote it: no weight_dtype (nor the settings added since).
OLD_RUN = {"model": "default", "dataset": "/data/seed.jsonl", "method": "lora", "name": "old", "epochs": 3,
           "lr": 2e-4, "batch_size": 8, "template": "chat", "model_path": "/models/base", "base_adapter": None,
           "created": 1700000000.5, "versions": {"python": "3.11.4", "torch": "2.1.0"}}


def test_a_created_run_reads_and_writes_back_exactly(workspace, tiny_model_dir):
    config = TrainConfig(model=str(tiny_model_dir), dataset="seed_instructions.jsonl", method="lora", name="r1")
    run_dir = create_run(config, workspace, check_plan=False)
    written = json.loads((run_dir / "run.json").read_text())
    # The format on disk: every config field, then what create_run resolved beside it, in that order.
    assert list(written) == [f.name for f in dataclasses.fields(TrainConfig)] + BESIDE
    record = RunRecord.read(run_dir)
    assert record.to_json() == written and list(record.to_json()) == list(written)
    assert RunRecord.from_json(written) == record
    assert (record.name, record.template, record.model_path) == ("r1", "chat", Path(tiny_model_dir))
    assert (record.base_adapter, record.model_revision) == (None, None)
    assert record.config.weight_dtype == "auto" and record.config.lr == 2e-4  # resolved at creation
    assert record.created == written["created"] and record.versions == written["versions"]
    assert Path(record.config.dataset) == (workspace / "datasets" / "seed_instructions.jsonl").resolve()


def test_a_hand_written_run_round_trips_every_key_it_has():
    values = OLD_RUN | {"weight_dtype": "bfloat16", "base_adapter": "/runs/first/adapter", "model_revision": "abc123",
                        "lora_targets": ["q_proj", "v_proj"], "max_steps": None}
    record = RunRecord.from_json(values)
    assert (record.base_adapter, record.model_revision) == (Path("/runs/first/adapter"), "abc123")
    written = record.to_json()
    assert {key: written[key] for key in values} == values
    assert RunRecord.from_json(written) == record


def test_an_old_run_without_weight_dtype_reads_as_float32():
    record = RunRecord.from_json(OLD_RUN)
    assert record.config.weight_dtype == "float32"  # it trained on fp32 weights: it resumes and exports so
    assert record.config.resolved().weight_dtype == "float32"
    written = record.to_json()
    assert {key: written[key] for key in OLD_RUN} == OLD_RUN and written["weight_dtype"] == "float32"


@pytest.mark.parametrize("model_path", ["missing", None, "", 5, ["/models/base"]])
def test_a_run_json_without_a_model_path_is_one_clear_error(tmp_path, model_path):
    values = {key: value for key, value in OLD_RUN.items() if key != "model_path"}
    if model_path != "missing":
        values["model_path"] = model_path
    with pytest.raises(ConfigError) as refused:
        RunRecord.from_json(values)
    assert [name for name, _ in refused.value.errors] == ["model_path"]
    write_json_atomic(tmp_path / "run.json", values)
    with pytest.raises(ModelError) as refused:
        RunRecord.read(tmp_path)
    message = str(refused.value)
    assert "\n" not in message and str(tmp_path / "run.json") in message and "model_path" in message, message


def test_a_setting_of_the_wrong_type_is_one_clear_error(tmp_path):
    write_json_atomic(tmp_path / "run.json", OLD_RUN | {"lr": "fast"})
    with pytest.raises(ModelError, match="lr: cannot read 'fast'") as refused:
        RunRecord.read(tmp_path)
    assert "\n" not in str(refused.value)
    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="not a JSON object"):
        RunRecord.read(tmp_path)


def test_every_command_refuses_a_run_without_model_path_in_one_line(workspace, capsys):
    from tui_ft.engine.runs.worker import run_worker

    run_dir = workspace / "checkpoints" / "pathless"
    (run_dir / "ckpt" / "step-1").mkdir(parents=True)
    values = {key: value for key, value in OLD_RUN.items() if key != "model_path"} | {"name": "pathless"}
    write_json_atomic(run_dir / "run.json", values)
    write_json_atomic(run_dir / "status.json", {"state": "stopped", "pid": None, "step": 1})
    home = ["--home", str(workspace)]
    for argv in (["export", "pathless", "--merged", str(workspace / "out")],
                 ["eval", "pathless", "--checkpoint", "step-1", "--perplexity", "seed_instructions.jsonl", "--no-cache"]):
        assert main([*home, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("tui-ft: ") and "model_path" in err, (argv, err)
    assert run_worker(run_dir) == 1  # the worker ends the run as failed, saying why
    status = read_status(run_dir)
    assert status["state"] == "failed" and "model_path" in status["message"] and "\n" not in status["message"], status
    assert not (workspace / "out").exists()
