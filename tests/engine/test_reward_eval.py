"""``eval --reward``: a reward model judges a model's greedy replies to a prompt sheet; the mean reward is a
stored Benchmark column like the other scores."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.polling import wait_for
from tui_ft.cli import main
from tui_ft.engine.evaluation import evaluate_many, load_results, model_session
from tui_ft.engine.evaluation.jobs import read_job_status, start_eval_job
from tui_ft.engine.evaluation.run_rename import rename_run
from tui_ft.engine.models import ModelError
from tui_ft.engine.runs import create_run
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.training.reward import load_reward_model, score_pairs
from tui_ft.engine.training.trainer import train_run
from tui_ft.views.bench_table import Column, Row, build_table, candidate_columns, cell_text, sort_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["Tell me about the sea.", "Name a colour.", "What is bread?"]


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory, tiny_model_dir):
    """A finished reward run on the tiny model (two steps: its scores only need to be the same everywhere)."""
    home = tmp_path_factory.mktemp("rm-home")
    (home / "checkpoints").mkdir()
    data = home / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Say something about {t}.", "chosen": f"{t} is good.",
                                        "rejected": f"{t} is bad."}) + "\n" for t in ("rain", "tea", "snow", "stars")))
    run_dir = create_run(TrainConfig(model=str(tiny_model_dir), dataset=str(data), method="reward", max_steps=2,
                                     batch_size=2, eval_split=0.0, warmup_ratio=0.0, seed=5, name="judge"), home)
    assert train_run(run_dir) == "finished"
    return run_dir


@pytest.fixture
def judged_workspace(workspace, reward_run, monkeypatch):
    """The workspace with the reward run copied in and a three-prompt sheet in datasets/."""
    monkeypatch.chdir(workspace)
    shutil.copytree(reward_run, workspace / "checkpoints" / "judge")
    (workspace / "datasets" / "sheet.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return workspace


def settings():
    from tui_ft.engine.evaluation import default_settings

    return default_settings(6)  # six greedy tokens: the tiny model's replies are noise either way


def test_the_mean_reward_of_the_greedy_replies_is_stored_and_reused(judged_workspace, tiny_model_dir, monkeypatch):
    ref = str(tiny_model_dir)
    [record] = evaluate_many([ref], judged_workspace, settings=settings(), reward_prompts=["datasets/sheet.jsonl"],
                             reward="judge")
    assert record["kind"] == "reward" and record["cached"] is False and record["n"] == 3
    assert record["reward_model_name"] == "judge" and record["prompts"] == "datasets/sheet.jsonl"
    assert [item["prompt"] for item in record["items"]] == PROMPTS and [i["line"] for i in record["items"]] == [1, 2, 3]
    assert all(isinstance(item["reply"], str) for item in record["items"])  # the tiny model may say nothing
    # Each reward is what the reward model says of that prompt and reply, scored on its own.
    model, tokenizer, template = load_reward_model(judged_workspace / "checkpoints" / "judge")
    alone = [score_pairs(model, tokenizer, template, [(i["prompt"], i["reply"])])[0] for i in record["items"]]
    assert [item["reward"] for item in record["items"]] == pytest.approx(alone, abs=1e-4)
    assert record["reward"] == pytest.approx(sum(alone) / 3, abs=1e-4)

    with monkeypatch.context() as patch:  # stored: neither model loads again
        patch.setattr(model_session, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
        [again] = evaluate_many([ref], judged_workspace, settings=settings(), reward_prompts=["datasets/sheet.jsonl"],
                                reward="judge")
    assert again["cached"] is True and again["reward"] == record["reward"]

    # The reward model trained again (its weights changed) judges again.
    weights = judged_workspace / "checkpoints" / "judge" / "adapter" / "adapter_model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    [fresh] = evaluate_many([ref], judged_workspace, settings=settings(), reward_prompts=["datasets/sheet.jsonl"],
                            reward="judge")
    assert fresh["cached"] is False and fresh["reward"] == pytest.approx(record["reward"], abs=1e-4)
    assert len(load_results(judged_workspace)) == 1  # the stale judgement was replaced

    # The Benchmark table: a column for the sheet under this reward model, the mean reward in its cell.
    table = build_table(judged_workspace)
    column = Column("reward", "datasets/sheet.jsonl", scorer="judge")
    assert column in table.columns and column.label == "sheet reward:judge"
    [row] = [row for row in table.rows if table.cell(row, column)]
    assert table.value(row, column) == fresh["reward"]
    assert cell_text(table.cell(row, column)) == f"{fresh['reward']:+.2f}"
    assert Column.from_key(column.key) == column
    # Higher rewards sort first, as higher scores do.
    best = Row("other", "other", None, "model", "other")
    table.cells[(best.key, column.key)] = {"kind": "reward", "reward": fresh["reward"] + 1}
    assert sort_rows(table, [row, best], column) == [best, row]
    # The pane offers the sheet to each finished reward model, as it offers benchmarks.
    assert column in candidate_columns(judged_workspace)


def test_renaming_the_reward_model_keeps_its_judgements(judged_workspace, tiny_model_dir, monkeypatch):
    ref = str(tiny_model_dir)
    [record] = evaluate_many([ref], judged_workspace, settings=settings(), reward_prompts=["datasets/sheet.jsonl"],
                             reward="judge")
    rename_run(judged_workspace / "checkpoints" / "judge", "referee", judged_workspace)
    [stored] = load_results(judged_workspace)
    assert stored["reward_model_name"] == "referee"
    assert stored["reward_model"] == f"run:{(judged_workspace / 'checkpoints' / 'referee').resolve()}"
    with monkeypatch.context() as patch:
        patch.setattr(model_session, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
        [again] = evaluate_many([ref], judged_workspace, settings=settings(), reward_prompts=["datasets/sheet.jsonl"],
                                reward="referee")
    assert again["cached"] is True and again["reward"] == record["reward"]


def test_a_detached_job_judges_and_its_column_fills(judged_workspace, tiny_model_dir):
    job_dir = start_eval_job(judged_workspace, [str(tiny_model_dir)], reward_prompts="datasets/sheet.jsonl",
                             reward="judge", max_new_tokens=4)
    job = json.loads((job_dir / "job.json").read_text())
    assert job["reward"] == str((judged_workspace / "checkpoints" / "judge").resolve())
    status = wait_for(lambda: (s := read_job_status(job_dir))["state"] in ("finished", "failed", "died") and s,
                      "the evaluation job to end", timeout=240)
    assert status["state"] == "finished", (job_dir / "worker.log").read_text()
    assert status["done"] == status["total"] == 3
    [stored] = load_results(judged_workspace)
    assert status["results"][0]["reward"] == stored["reward"] and stored["settings"]["max_new_tokens"] == 4


def test_what_cannot_judge_is_one_line_before_any_model_loads(judged_workspace, tiny_model_dir, capsys):
    chatty = judged_workspace / "checkpoints" / "chatty"
    chatty.mkdir()
    (chatty / "run.json").write_text(json.dumps({"name": "chatty", "method": "lora", "model": "default",
                                                 "model_path": str(tiny_model_dir), "template": "chat"}))
    (judged_workspace / "datasets" / "empty_chat.jsonl").write_text(
        json.dumps({"messages": [{"role": "system", "content": "x"}, {"role": "assistant", "content": "y"}]}) + "\n")
    cases = [
        (["--reward", "judge"], "tui-ft: --reward RUN and --prompts PATH go together: a reward model judges the "
                                "replies to prompts"),
        (["--prompts", "datasets/sheet.jsonl"], "tui-ft: --reward RUN and --prompts PATH go together: a reward model "
                                                "judges the replies to prompts"),
        (["--reward", "nobody", "--prompts", "datasets/sheet.jsonl"],
         "tui-ft: nobody: no run of that name (a reward model is a run trained with --method reward)"),
        (["--reward", "chatty", "--prompts", "datasets/sheet.jsonl"],
         "tui-ft: chatty: not a reward model (its method is lora); train one with --method reward"),
        (["--reward", "judge", "--prompts", "datasets/empty_chat.jsonl"],
         "tui-ft: datasets/empty_chat.jsonl:1: a chat file has no prompts to answer"),
    ]
    for flags, expected in cases:  # in this process: each is refused before anything loads
        capsys.readouterr()
        code = main(["--home", str(judged_workspace), "eval", str(tiny_model_dir), *flags])
        out, err = capsys.readouterr()
        # A file's problem exits 1, as every dataset problem does; a wrong flag or model 2.
        assert (code, out, err.strip()) == (1 if expected.startswith("tui-ft: datasets/") else 2, "", expected), flags
    with pytest.raises(ModelError, match="no final weights yet"):
        shutil.rmtree(judged_workspace / "checkpoints" / "judge" / "adapter")
        evaluate_many([str(tiny_model_dir)], judged_workspace, reward_prompts=["datasets/sheet.jsonl"], reward="judge")


def test_prompts_come_from_any_dataset_with_questions(workspace):
    from tui_ft.engine.data import load_dataset, prompt_items

    pairs = prompt_items(load_dataset(workspace / "datasets" / "dpo_concise.jsonl"))
    bench = prompt_items(load_dataset(workspace / "datasets" / "seed_benchmark.jsonl"))
    sheet = prompt_items(load_dataset(workspace / "datasets" / "seed_human_eval_prompts.jsonl"))
    assert sheet[0].prompt == "What is the boiling point of water?" and sheet[0].line == 1
    assert bench[0].line == 1 and bench[0].prompt and pairs[0].prompt and pairs[-1].line == len(pairs)
    path = workspace / "alpaca.jsonl"
    path.write_text(json.dumps({"instruction": "Translate.", "input": "bonjour", "output": "hello"}) + "\n")
    assert prompt_items(load_dataset(path))[0].prompt == "Translate.\n\nbonjour"
