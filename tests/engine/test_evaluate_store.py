"""Stored results are reused, invalidated by edits, and filled by detached jobs."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest

from tui_ft.engine.evaluation import default_settings, evaluate, load_results, model_session
from tui_ft.engine.evaluation.jobs import list_jobs, read_job_status, start_eval_job
from tui_ft.engine.evaluation.worker import run_job
from tui_ft.engine.files import write_json_atomic
from tui_ft.engine.processes import STOP_FILE


def test_perplexity_result_is_stored_and_reused(workspace, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(workspace)
    ref, dataset = str(tiny_model_dir), "datasets/seed_instructions_20.jsonl"
    first = evaluate(ref, workspace, perplexity_path=dataset, template="alpaca")
    assert first["cached"] is False and first["tokens"] > 0 and first["dataset"] == dataset
    with monkeypatch.context() as patch:
        patch.setattr(model_session, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
        second = evaluate(ref, workspace, perplexity_path=workspace / dataset, template="alpaca")
    assert second["cached"] is True
    assert second["perplexity"] == first["perplexity"] and second["created"] == first["created"]
    stored = load_results(workspace)
    assert len(stored) == 1 and stored[0]["perplexity"] == first["perplexity"]
    assert str(workspace / "bench") in stored[0]["file"]
    # Another template is another result; an edited dataset is computed again.
    assert evaluate(ref, workspace, perplexity_path=dataset, template="chat")["cached"] is False
    with open(workspace / dataset, "a") as handle:
        handle.write('{"instruction": "Say yes.", "response": "Yes."}\n')
    again = evaluate(ref, workspace, perplexity_path=dataset, template="alpaca")
    assert again["cached"] is False and again["tokens"] > first["tokens"]
    assert len(load_results(workspace)) == 2  # the edited file's result replaced the stale one


def test_benchmark_result_keeps_items_and_is_keyed_by_settings(workspace, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(workspace)
    ref, bench = str(tiny_model_dir), "datasets/seed_benchmark.jsonl"
    short = default_settings(3)
    record = evaluate(ref, workspace, benchmark=bench, settings=short)
    assert record["n"] == 5 and record["scorer"] == "contains" and record["settings"]["max_new_tokens"] == 3
    assert [i["expected"] for i in record["items"]] == ["4", "Paris", "blue", "7", "water"]
    assert record["score"] == sum(i["correct"] for i in record["items"]) / 5
    with monkeypatch.context() as patch:
        patch.setattr(model_session, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
        assert evaluate(ref, workspace, benchmark=bench, settings=default_settings(3))["cached"] is True
    assert evaluate(ref, workspace, benchmark=bench, settings=default_settings(2))["cached"] is False
    assert evaluate(ref, workspace, benchmark=bench, settings=short, scorer="exact", use_cache=False)["scorer"] == "exact"
    kinds = sorted((r["scorer"], r["settings"]["max_new_tokens"]) for r in load_results(workspace))
    assert kinds == [("contains", 2), ("contains", 3), ("exact", 3)]


def test_detached_job_runs_and_stores_results(workspace, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(workspace)
    job_dir = start_eval_job(workspace, [str(tiny_model_dir)], perplexity_path="datasets/seed_instructions_20.jsonl")
    assert job_dir.parent == workspace / "bench" / "jobs"
    deadline = time.monotonic() + 90
    while (status := read_job_status(job_dir))["state"] not in ("finished", "failed", "died"):
        assert time.monotonic() < deadline, (job_dir / "worker.log").read_text()
        time.sleep(0.3)
    assert status["state"] == "finished", (job_dir / "worker.log").read_text()
    assert status["done"] == status["total"] == 20
    assert status["pid"] != __import__("os").getpid()  # another process did the work
    [stored] = load_results(workspace)
    assert status["results"][0]["perplexity"] == stored["perplexity"] > 1
    assert [job["id"] for job in list_jobs(workspace)] == [job_dir.name]


def test_job_stops_on_stop_file(workspace, tiny_model_dir):
    job_dir = workspace / "bench" / "jobs" / "manual"
    job = {"id": "manual", "home": str(workspace), "refs": [str(tiny_model_dir)], "checkpoint": None, "template": None,
           "scorer": None, "max_new_tokens": 2, "use_cache": True,
           "benchmarks": [str(workspace / "datasets" / "seed_benchmark.jsonl")], "perplexity": []}
    write_json_atomic(job_dir / "job.json", job, parents=True)
    write_json_atomic(job_dir / "status.json", {"state": "queued", "pid": None, "done": 0, "total": 5})
    (job_dir / STOP_FILE).touch()
    assert run_job(job_dir) == 0
    assert read_job_status(job_dir)["state"] == "stopped"
    assert load_results(workspace) == []  # a stopped evaluation stores nothing


def test_job_whose_worker_vanished_reads_died(workspace):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    job_dir = workspace / "bench" / "jobs" / "lost"
    write_json_atomic(job_dir / "job.json", {"id": "lost"}, parents=True)
    write_json_atomic(job_dir / "status.json", {"state": "running", "pid": int(gone.stdout), "done": 1, "total": 5})
    assert read_job_status(job_dir)["state"] == "died"
    assert orjson.loads((job_dir / "status.json").read_bytes())["state"] == "running"  # reading changes nothing


def test_checkpoint_of_a_run_is_its_base_plus_trainable_weights(workspace, tiny_model_dir, monkeypatch):
    """A LoRA run's step-N checkpoint loads onto the base model, as training saved it."""
    import torch
    from safetensors.torch import save_file

    from tui_ft.engine.data import load_dataset, sft_examples
    from tui_ft.engine.evaluation.scoring import perplexity
    from tui_ft.engine.models import ModelError
    from tui_ft.engine.runs import create_run
    from tui_ft.engine.runs.config import TrainConfig
    from tui_ft.engine.runs.record import RunRecord
    from tui_ft.engine.training.checkpoint import WEIGHTS_FILE, trainable_state
    from tui_ft.engine.training.methods import build_model

    monkeypatch.chdir(workspace)
    dataset = "datasets/seed_instructions_20.jsonl"
    run_dir = create_run(TrainConfig(model=str(tiny_model_dir), dataset=dataset, method="lora", name="r1"), workspace)
    config = orjson.loads((run_dir / "run.json").read_bytes())
    model = build_model(RunRecord.from_json(config), "cpu")
    torch.manual_seed(1)
    with torch.no_grad():
        for _name, param in model.named_parameters():
            if param.requires_grad:  # LoRA's B starts at zero: make the adapter change the output
                param.add_(torch.randn_like(param) * 0.5)
    (run_dir / "ckpt" / "step-2").mkdir(parents=True)
    save_file(trainable_state(model), run_dir / "ckpt" / "step-2" / WEIGHTS_FILE)
    examples = sft_examples(load_dataset(workspace / dataset))
    from tui_ft.engine.models import load_tokenizer

    expected = perplexity(model.eval(), load_tokenizer(tiny_model_dir), examples, config["template"]).perplexity
    record = evaluate("r1", workspace, perplexity_path=dataset, checkpoint="step-2")
    assert record["checkpoint"] == "step-2" and record["model_id"] == f"run:{run_dir.resolve()}"
    assert record["perplexity"] == pytest.approx(expected, rel=1e-5)
    base = evaluate(str(tiny_model_dir), workspace, perplexity_path=dataset, template=config["template"])
    assert base["perplexity"] != pytest.approx(expected, rel=1e-3)  # the checkpoint's weights were used
    assert [r["checkpoint"] for r in load_results(workspace) if "checkpoints" in r["file"]] == ["step-2"]
    with pytest.raises(ModelError, match="available: step-2"):
        evaluate("r1", workspace, perplexity_path=dataset, checkpoint="step-9")
    with pytest.raises(ModelError, match="no final weights"):
        evaluate("r1", workspace, perplexity_path=dataset)
