"""Hub ids through train, chat, eval and export, as a user runs them, against the stand-in Hub (``tests/hub_standin.py``).

A run is created from the model's config and tokenizer only; its worker (a real detached
process, which inherits ``HF_ENDPOINT`` and ``HF_HOME``) fetches the weights with the bytes in
``status.json``, stops mid-download and resumes; the CLI shows a bar and refuses in one line.
"""

from __future__ import annotations

import json
import socket

import pytest
from hub_standin import TOKEN, hub, hub_cache, only_loopback, tiny_repo_files  # noqa: F401 (fixtures)
from rich.filesize import decimal

from tui_ft.cli import main
from tui_ft.engine.models import fetch_run_weights
from tui_ft.engine.runs import (
    FINAL_STATES,
    create_run,
    launch_run,
    read_metrics,
    read_status,
    resume_run,
    stop_run,
    validate_config,
)
from tui_ft.engine.runs.config import TrainConfig

from polling import wait_for

DATASET = "datasets/seed_instructions.jsonl"


def hub_run(name: str, **settings) -> TrainConfig:
    return TrainConfig(model="acme/tiny", dataset=DATASET, method="lora", max_steps=2, batch_size=2, save_every=0,
                       eval_split=0.0, name=name, **settings)


def test_create_run_fetches_the_config_and_tokenizer_only_and_pins_the_commit(hub, tiny_repo_files, workspace,
                                                                             tmp_path):
    sha = hub.add_repo("acme/tiny", tiny_repo_files)
    config = hub_run("pinned")
    assert validate_config(config, workspace) == []
    run_dir = create_run(config, workspace)
    record = json.loads((run_dir / "run.json").read_text())
    snapshot = hub_cache(tmp_path) / "models--acme--tiny" / "snapshots" / sha
    assert (record["model"], record["model_revision"], record["model_path"]) == ("acme/tiny", sha, str(snapshot))
    assert record["template"] == "chat" and (snapshot / "tokenizer.json").is_file()
    assert hub.fetched("model.safetensors") == [] and not (snapshot / "model.safetensors").exists()
    # main moves on: the run still gets the weights of the commit it was created and checked with.
    changed = dict(tiny_repo_files, **{"model.safetensors": tiny_repo_files["model.safetensors"][:-8] + bytes(8)})
    hub.add_repo("acme/tiny", changed)
    fetch_run_weights(record)
    assert (snapshot / "model.safetensors").read_bytes() == tiny_repo_files["model.safetensors"]


def test_a_detached_run_downloads_its_weights_with_the_bytes_in_status_stops_resumes_and_trains(
        hub, tiny_repo_files, workspace, tmp_path, monkeypatch, reap):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the tiny model needs one thread; the CPU is shared
    sha = hub.add_repo("acme/tiny", tiny_repo_files)
    size = len(tiny_repo_files["model.safetensors"])
    hub.rate = size / 5  # about 5 s for the weights: time to see the bytes and to stop midway
    run_dir = create_run(hub_run("hub-life"), workspace)
    reap(launch_run(run_dir))

    def downloading():
        status = read_status(run_dir)
        return status if (status.get("download") or {}).get("done", 0) > 0 else None

    status = wait_for(downloading, "the worker's download in status.json")
    done = status["download"]["done"]
    assert status["state"] == "running" and status["download"] == {"what": "downloading acme/tiny", "done": done,
                                                                   "total": size}
    assert status["message"] == f"downloading acme/tiny: {decimal(done)} of {decimal(size)}"
    assert 0 < done < size

    stop_run(run_dir)
    status = wait_for(lambda: (s := read_status(run_dir))["state"] in FINAL_STATES and s, "the stop")
    assert status["state"] == "stopped", status
    assert status["message"].endswith("kept); resume to continue the download") and status.get("download") is None
    blobs = hub_cache(tmp_path) / "models--acme--tiny" / "blobs"
    kept = next(blobs.glob("*.incomplete")).stat().st_size
    assert 0 < kept < size and not (blobs.parent / "snapshots" / sha / "model.safetensors").exists()

    hub.rate = None
    reap(resume_run(run_dir))
    status = wait_for(lambda: (s := read_status(run_dir))["state"] in FINAL_STATES and s, "the resumed run to end",
                      timeout=300)
    assert status["state"] == "finished", (status, (run_dir / "worker.log").read_text()[-2000:])
    assert hub.fetched("model.safetensors")[-1][2].get("range") == f"bytes={kept}-"  # continued, not started again
    records = read_metrics(run_dir)
    events = [r["event"] for r in records if r["kind"] == "event"]
    assert events[:3] == ["stopped", "downloaded", "started"], events
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("failure", ["private now", "unreachable"])
def test_a_download_failure_in_the_worker_is_one_line_in_status(hub, tiny_repo_files, workspace, monkeypatch, failure):
    from tui_ft.engine.runs.worker import run_worker

    sha = hub.add_repo("acme/tiny", tiny_repo_files)
    run_dir = create_run(hub_run("broken"), workspace)
    if failure == "private now":
        hub.repos["acme/tiny"]["token"] = TOKEN
        expected = f"acme/tiny@{sha}: private or gated on {hub.url} (401): set HF_TOKEN or run `hf auth login`"
    else:
        with socket.socket() as spare:  # a port nobody listens on
            spare.bind(("127.0.0.1", 0))
            port = spare.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        expected = f"acme/tiny@{sha}: cannot reach http://127.0.0.1:{port}"
    assert run_worker(run_dir) == 1
    status = read_status(run_dir)
    assert status["state"] == "failed" and status["message"].startswith(expected), status
    assert "\n" not in status["message"]


def test_train_attached_draws_the_workers_download_and_export_fetches_missing_weights(
        hub, tiny_repo_files, workspace, tmp_path, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("COLUMNS", "160")  # rich's width when stderr is not a terminal: room for every column
    sha = hub.add_repo("acme/tiny", tiny_repo_files)
    size = len(tiny_repo_files["model.safetensors"])
    hub.rate = size / 3  # about 3 s: the follow output polls the status several times meanwhile
    code = main(["--home", str(workspace), "train", "--model", "acme/tiny", "--dataset", DATASET, "--method", "lora",
                 "--max-steps", "1", "--batch-size", "2", "--name", "hub-cli", "--set", "eval_split=0"])
    err = capsys.readouterr().err
    assert code == 0, err
    number, unit = decimal(size).split()
    bar = next(line for line in err.splitlines() if line.startswith("downloading acme/tiny"))
    assert f"{number}/{number} {unit}" in bar  # the bar's last state: every byte
    assert "step 0: downloaded acme/tiny: " in err and "hub-cli: finished" in err

    # The cache was cleaned since: export fetches the base weights again, with a line saying so.
    hub.rate = None
    snapshot = hub_cache(tmp_path) / "models--acme--tiny" / "snapshots" / sha
    (snapshot / "model.safetensors").resolve().unlink()
    (snapshot / "model.safetensors").unlink()
    out = tmp_path / "merged"
    assert main(["--home", str(workspace), "export", "hub-cli", "--merged", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"downloaded acme/tiny: {decimal(size)} in " in err
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert merged.config.num_hidden_layers == 2 and (snapshot / "model.safetensors").is_file()


def test_chat_and_eval_take_a_hub_id_and_show_the_download(hub, tiny_repo_files, workspace, capsys):
    hub.add_repo("acme/tiny", tiny_repo_files)
    size = len(tiny_repo_files["model.safetensors"])
    assert main(["--home", str(workspace), "chat", "acme/tiny", "--prompt", "hi", "--max-new-tokens", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("\n")  # the reply (a random model's: any tokens)
    downloads = [line for line in err.splitlines() if line.startswith("downloaded")]
    assert len(downloads) == 1 and downloads[0].startswith(f"downloaded acme/tiny: {decimal(size)} in "), err
    assert main(["--home", str(workspace), "eval", "acme/tiny", "--perplexity", DATASET, "--json"]) == 0
    out, err = capsys.readouterr()
    (result,) = json.loads(out)["results"]
    assert result["model"] == "acme/tiny" and result["perplexity"] > 1
    assert "downloaded" not in err and len(hub.fetched("model.safetensors")) == 1  # the cache served it


@pytest.mark.parametrize(("repo", "ref", "expected"), [
    ("acme/tiny", "acme/nothing", "tui-ft: acme/nothing: no such folder here and no such model on {url} (404): check the name"),
    ("acme/gated", "acme/gated", "tui-ft: acme/gated: private or gated on {url} (401): set HF_TOKEN or run `hf auth login`"),
    ("acme/tiny", "acme/tiny", "tui-ft: acme/tiny: cannot reach http://127.0.0.1:{port}"),
])
def test_the_cli_refuses_a_hub_model_it_cannot_fetch_in_one_line(hub, tiny_repo_files, workspace, monkeypatch, capsys,
                                                                  repo, ref, expected):
    hub.add_repo(repo, tiny_repo_files, token=TOKEN if repo == "acme/gated" else None, gated=repo == "acme/gated")
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    if "cannot reach" in expected:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    for command in (["chat", ref, "--prompt", "hi"], ["eval", ref, "--perplexity", DATASET],
                    ["train", "--model", ref, "--dataset", DATASET, "--method", "lora", "--detach"]):
        code = main(["--home", str(workspace), *command])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1, (command, err)
        wanted = expected.format(url=hub.url, port=port)
        if command[0] == "train":  # the form's field names the model
            wanted = wanted.replace("tui-ft: ", "tui-ft: model: ", 1)
        assert lines[0].startswith(wanted), (command, lines[0])
    assert not any((workspace / "checkpoints").iterdir())
