"""report_to: a run's metrics in TensorBoard and W&B (offline) too, and a tracker that fails never stops training.

Runs train the tiny random model in-process for a few steps; what the worker prints (its
``worker.log`` in a detached run) is this process's stdout here.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tui_ft.cli import main
from tui_ft.engine.runs import create_run, read_metrics, read_status
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.config_checks import check_values
from tui_ft.engine.training.trackers import TENSORBOARD_FOLDER, WANDB_RUN_FILE, open_trackers
from tui_ft.engine.training.trainer import train_run

from polling import wait_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SFT_DATA = "datasets/seed_instructions.jsonl"  # 8 examples
DPO_DATA = "datasets/dpo_concise.jsonl"


def start(home: Path, model: Path, **values) -> Path:
    values = {"model": str(model), "dataset": SFT_DATA, "method": "lora", "lr": 0.05, "batch_size": 4,
              "eval_split": 0.0, "save_every": 0, "warmup_ratio": 0.0, "seed": 5} | values
    return create_run(TrainConfig(**values), home)


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar as TensorBoard's own reader serves it: ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(run_dir / TENSORBOARD_FOLDER))
    reader.Reload()
    return {tag: [(event.step, event.value) for event in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def records_of(run_dir: Path, kind: str) -> list[dict]:
    return [r for r in read_metrics(run_dir) if r["kind"] == kind]


def warnings_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("warning:")]


def test_report_to_takes_none_either_tracker_or_both_and_refuses_others_in_one_line(workspace, tiny_model_dir, capsys):
    assert TrainConfig().report_to is None
    for given, read in (("none", None), ("tensorboard", ["tensorboard"]), ("wandb", ["wandb"]),
                        ("tensorboard, wandb", ["tensorboard", "wandb"])):
        config = TrainConfig.from_dict({"report_to": given}).resolved()
        assert config.report_to == read and not [e for e in check_values(config) if e[0] == "report_to"]
    for bad in ("tensorbord", "wandb,wandb", "none,wandb", "mlflow"):
        config = TrainConfig.from_dict({"report_to": bad}).resolved()
        assert [name for name, _ in check_values(config)] == ["report_to"], bad
    home = ["--home", str(workspace)]
    code = main([*home, "train", "--model", str(tiny_model_dir), "--dataset", SFT_DATA, "--method", "lora",
                 "--set", "report_to=tensorbord", "--detach"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1, err
    assert err == ("tui-ft: report_to: must be none, tensorboard, wandb or both comma-separated (tensorboard,wandb), "
                   "got 'tensorbord'\n")
    assert not list((workspace / "checkpoints").iterdir())  # nothing created


def test_tensorboard_holds_the_train_and_eval_curves_at_their_steps(workspace, tiny_model_dir, capsys):
    pytest.importorskip("tensorboard")
    run_dir = start(workspace, tiny_model_dir, max_steps=4, eval_dataset="datasets/seed_instructions_20.jsonl",
                    eval_every=2, report_to=["tensorboard"])
    assert train_run(run_dir) == "finished"
    assert not warnings_in(capsys.readouterr().out)
    scalars = tensorboard_scalars(run_dir)
    train, evals = records_of(run_dir, "train"), records_of(run_dir, "eval")
    for key in ("loss", "ppl", "lr", "grad_norm", "tokens_per_s", "tokens", "step_time"):
        expected = [(r["step"], pytest.approx(r[key], rel=1e-5)) for r in train]
        assert scalars[f"train/{key}"] == expected, key
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    for key in ("loss", "ppl"):
        assert scalars[f"eval/{key}"] == [(r["step"], pytest.approx(r[key], rel=1e-5)) for r in evals]
    assert [step for step, _ in scalars["eval/ppl"]] == [2, 4]
    assert not any(tag.startswith("event") for tag in scalars)  # events stay in metrics.jsonl


def test_tensorboard_shows_each_step_once_after_a_resume(workspace, tiny_model_dir):
    """The first worker logs steps 1-6 and an eval at 6 past its last checkpoint (step 4), as a worker
    that died there would; training again resumes at 4, and each of steps 5, 6 is shown once."""
    pytest.importorskip("tensorboard")
    run_dir = start(workspace, tiny_model_dir, max_steps=6, save_every=4, eval_dataset=SFT_DATA, eval_every=3,
                    report_to=["tensorboard"])
    assert train_run(run_dir) == "finished"
    first = tensorboard_scalars(run_dir)
    assert train_run(run_dir) == "finished"  # resumes from ckpt/step-4, as after a dead worker
    assert [r["event"] for r in read_metrics(run_dir) if r["kind"] == "event"][-3:] == ["finished", "resumed", "finished"]
    assert len(list((run_dir / TENSORBOARD_FOLDER).glob("events.out.tfevents.*"))) == 2  # the second one appended
    scalars = tensorboard_scalars(run_dir)
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert [step for step, _ in scalars["eval/loss"]] == [3, 6]  # not 3, 6, 6
    assert scalars["train/loss"][:4] == first["train/loss"][:4]  # what came before the checkpoint is kept
    # The resumed worker's values are the ones shown (they equal read_metrics', which drops the dead steps).
    assert scalars["train/loss"] == [(r["step"], pytest.approx(r["loss"], rel=1e-5)) for r in records_of(run_dir, "train")]


def test_dpo_rewards_margins_and_accuracy_reach_tensorboard(workspace, tiny_model_dir):
    pytest.importorskip("tensorboard")
    run_dir = start(workspace, tiny_model_dir, dataset=DPO_DATA, method="dpo", max_steps=2, batch_size=8,
                    eval_dataset=DPO_DATA, eval_every=2, report_to=["tensorboard"])
    assert train_run(run_dir) == "finished"
    scalars = tensorboard_scalars(run_dir)
    for kind in ("train", "eval"):
        records = records_of(run_dir, kind)
        for key in ("loss", "rewards_chosen", "rewards_rejected", "rewards_margin", "rewards_accuracy"):
            assert scalars[f"{kind}/{key}"] == [(r["step"], pytest.approx(r[key], rel=1e-5, abs=1e-7)) for r in records], key
    assert [step for step, _ in scalars["train/rewards_margin"]] == [1, 2]


def test_failing_trackers_are_one_warning_line_each_and_training_goes_on(workspace, tiny_model_dir, capsys, monkeypatch):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    calls = []

    def disk_full(self, tag, value, step):
        calls.append(step)
        if step >= 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(SummaryWriter, "add_scalar", disk_full)
    run_dir = start(workspace, tiny_model_dir, max_steps=4, report_to=["tensorboard", "wandb"])
    assert train_run(run_dir) == "finished"
    out = capsys.readouterr().out
    assert warnings_in(out) == [
        "warning: report_to=wandb: not installed (pip install 'tui_ft[wandb]'); training goes on without it",
        "warning: report_to=tensorboard: OSError: [Errno 28] No space left on device; training goes on without it",
    ]
    assert max(calls) == 2  # dropped at its first failure: never called again
    assert [r["step"] for r in records_of(run_dir, "train")] == [1, 2, 3, 4]
    assert read_status(run_dir)["state"] == "finished" and (run_dir / "adapter").is_dir()


def test_tensorboard_not_installed_is_one_warning_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)  # imported again: it needs tensorboard
    trackers = open_trackers(["tensorboard"], tmp_path, 0)
    trackers.log("train", 1, {"loss": 1.0})
    trackers.close()
    assert capsys.readouterr().out == ("warning: report_to=tensorboard: not installed (pip install 'tui_ft[tensorboard]'); "
                                       "training goes on without it\n")
    assert not (tmp_path / TENSORBOARD_FOLDER).exists()


# ----- Weights & Biases, offline ---------------------------------------------------------------

LOG_BLOCK = 32 * 1024  # the .wandb file is LevelDB's log format: 32 KiB blocks of (crc, length, type) records


def wandb_payloads(path: Path) -> list[bytes]:
    """The serialized records of an offline run's ``run-ID.wandb`` file (wandb ships no public reader of it)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    payloads, pending, offset = [], b"", 7  # header: ":W&B", a magic number, a version
    while offset + 7 <= len(data):
        if LOG_BLOCK - offset % LOG_BLOCK < 7:  # a block's tail too short for a header is padding
            offset += LOG_BLOCK - offset % LOG_BLOCK
            continue
        length, kind = struct.unpack_from("<HB", data, offset + 4)
        pending += data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # FULL, or the LAST piece of a record split across blocks
            payloads.append(pending)
            pending = b""
    return payloads


def read_offline_run(path: Path) -> tuple[dict, dict[str, list[tuple[int, float]]], bool]:
    """An offline run's identity and config (``{"id", "name", "project", "config"}``), its history, and
    whether it has ended (its ``exit`` record is written)."""
    import json

    from wandb.proto import wandb_internal_pb2

    run, history, ended = {}, {}, False
    for payload in wandb_payloads(path):
        record = wandb_internal_pb2.Record.FromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = {"id": record.run.run_id, "name": record.run.display_name, "project": record.run.project,
                   "config": {item.key: json.loads(item.value_json) for item in record.run.config.update}}
        elif kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    history.setdefault(key, []).append((record.history.step.num, json.loads(item.value_json)))
        ended = ended or kind == "exit"
    return run, history, ended


def ended_offline_run(folder: Path) -> tuple[dict, dict[str, list[tuple[int, float]]]]:
    """:func:`read_offline_run` of the run in ``folder`` (``offline-run-*``), once W&B has written all of it.

    ``finish()`` returns before W&B's own process has written the file out (it was seen empty
    right after, whole a moment later).
    """
    def read():
        logs = list(folder.glob("run-*.wandb"))
        return logs and (found := read_offline_run(logs[0]))[2] and found

    run, history, _ = wait_for(read, f"W&B to write out {folder.name}", timeout=120)
    return run, history


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch) -> Iterator[Path]:
    """W&B offline, its files under a temporary folder; never the network, nor the user's own settings."""
    pytest.importorskip("wandb", reason="wandb is an optional extra: pip install 'tui_ft[wandb]'")
    folder = tmp_path / "wandb-dir"
    folder.mkdir()
    for name in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(folder))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    import wandb

    wandb.teardown()  # W&B reads the environment once a process: from here, this test's
    yield folder
    wandb.teardown()


def test_wandb_offline_run_holds_the_metrics_config_and_name_and_resumes_under_the_same_id(workspace, tiny_model_dir,
                                                                                           wandb_offline, capsys):
    run_dir = start(workspace, tiny_model_dir, max_steps=4, save_every=2, eval_dataset=SFT_DATA, eval_every=2,
                    report_to=["wandb"], name="wb-run")
    assert train_run(run_dir) == "finished"
    assert not warnings_in(capsys.readouterr().out)
    run_id = orjson.loads((run_dir / WANDB_RUN_FILE).read_bytes())["id"]
    [offline] = list((wandb_offline / "wandb").glob("offline-run-*"))
    run, history = ended_offline_run(offline)
    assert (run["id"], run["name"], run["project"]) == (run_id, "wb-run", "tui_ft")
    assert run["config"]["lr"] == 0.05 and run["config"]["report_to"] == ["wandb"] and run["config"]["max_steps"] == 4
    for kind in ("train", "eval"):
        for key in ("loss", "ppl"):
            assert history[f"{kind}/{key}"] == [(r["step"], pytest.approx(r[key])) for r in records_of(run_dir, kind)]
    assert [step for step, _ in history["train/lr"]] == [1, 2, 3, 4]
    assert {"train/grad_norm", "train/tokens_per_s"} <= set(history)

    # Trained again from ckpt/step-2 (as after a dead worker): the same W&B run id, a second offline folder.
    assert train_run(run_dir) == "finished"
    resumed = [p for p in (wandb_offline / "wandb").glob("offline-run-*") if p != offline]
    assert [p.name.endswith(f"-{run_id}") for p in resumed] == [True]
    run, history = ended_offline_run(resumed[0])
    assert run["id"] == run_id
    assert [step for step, _ in history["train/loss"]] == [3, 4]


@pytest.fixture
def wandb_logged_out(wandb_offline, tmp_path, monkeypatch) -> Path:
    """W&B with no mode chosen and no API key anywhere (no $WANDB_API_KEY, an empty home: no ~/.netrc)."""
    monkeypatch.delenv("WANDB_MODE")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    return wandb_offline


def test_wandb_logs_offline_when_nobody_is_logged_in(tmp_path, wandb_logged_out, capsys):
    run_dir = tmp_path / "quiet-run"
    run_dir.mkdir()
    trackers = open_trackers(["wandb"], run_dir, 0)
    trackers.log("train", 1, {"loss": 2.5, "lr": 0.1, "note": "text is left out"})
    trackers.close()
    out = capsys.readouterr().out
    assert "report_to=wandb: not logged in to W&B (wandb login): logging offline" in out and not warnings_in(out)
    [offline] = list((wandb_logged_out / "wandb").glob("offline-run-*"))
    run, history = ended_offline_run(offline)
    assert run["name"] == "quiet-run" and history == {"train/loss": [(1, 2.5)], "train/lr": [(1, 0.1)]}


def test_wandb_that_cannot_reach_its_server_is_one_warning_line(tmp_path, wandb_logged_out, capsys, monkeypatch):
    """Logged in (an API key), but the server does not answer: a closed port on 127.0.0.1 stands for no network."""
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("WANDB_API_KEY", "k" * 86)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "2")  # W&B waits 90 s by default; it retries for about 15 s on top
    trackers = open_trackers(["wandb"], tmp_path, 0)
    trackers.log("train", 1, {"loss": 2.5})
    trackers.close()
    [warning] = warnings_in(capsys.readouterr().out)
    assert warning.startswith("warning: report_to=wandb: CommError: ") and warning.endswith("; training goes on without it")
