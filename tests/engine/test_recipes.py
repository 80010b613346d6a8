"""Recipes: YAML settings that train a run again, every problem at its line; runs show --recipe; metrics as CSV."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.recipe import RecipeError, config_from_recipe, find_recipe, read_recipe, recipe_text

REPO = Path(__file__).resolve().parents[2]


def cli(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui_ft", "--home", str(home), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, cwd=cwd or home)


def test_a_config_written_as_a_recipe_reads_back_the_same(tmp_path):
    config = TrainConfig(model="org/model", dataset="data.jsonl", method="qlora", name="mine", lr=3e-4, epochs=2,
                         lora_targets=["q_proj", "v_proj"], gradient_checkpointing=True, eval_dataset=None,
                         trust_remote_code=True)
    path = tmp_path / "r.yaml"
    path.write_text(recipe_text(config.to_dict(), "a comment\non two lines"))
    text = path.read_text()
    assert text.startswith("# a comment\n# on two lines\nmodel: org/model\n")
    assert "lora_targets: [q_proj, v_proj]\n" in text
    assert "name:" not in text and "trust_remote_code" not in text and "eval_dataset" not in text
    again = config_from_recipe(read_recipe(path))
    assert again == TrainConfig(**(config.to_dict() | {"name": None, "trust_remote_code": False}))


def test_every_problem_is_reported_at_its_line_and_nothing_else_is_read(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: default\n"
                    "dataset: demo_veloria.jsonl\n"
                    "learning_rate: 0.001\n"
                    "epochs: [3]\n"
                    "train_on_prompt: maybe\n"
                    "lr: true\n"
                    "trust_remote_code: true\n"
                    "lora_rank: {a: 1}\n"
                    "model: other\n")
    with pytest.raises(RecipeError) as caught:
        read_recipe(path)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{path}:3: learning_rate: unknown setting (did you mean lr?)",
        f"{path}:4: epochs: expected a whole number, got a list",
        f"{path}:5: train_on_prompt: cannot read 'maybe' as bool",
        f"{path}:6: lr: expected a number, got true",
        f"{path}:7: trust_remote_code: not taken from a recipe (it runs the model's own code): "
        "give --set trust_remote_code=true on the command line",
        f"{path}:8: lora_rank: expected a whole number, got a mapping",
        f"{path}:9: model: given twice (first on line 1)",
    ]
    cases = {
        "model: default\n  dataset: x\n": f"{tmp_path}/case.yaml:2: not valid YAML: mapping values are not allowed here",
        "- model: default\n": f"{tmp_path}/case.yaml:1: a recipe is a mapping of settings (`key: value` lines), "
                              "not a list or a value",
        "# only a comment\n": f"{tmp_path}/case.yaml: empty: a recipe is settings, one `key: value` a line",
    }
    for text, message in cases.items():
        (tmp_path / "case.yaml").write_text(text)
        with pytest.raises(RecipeError) as caught:
            read_recipe(tmp_path / "case.yaml")
        assert [str(p) for p in caught.value.problems] == [message]
    (tmp_path / "case.yaml").write_bytes(b"model: \xff\n")
    with pytest.raises(RecipeError, match="not UTF-8 text"):
        read_recipe(tmp_path / "case.yaml")


def test_a_recipe_is_found_by_path_or_by_name_in_recipes(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mine.yaml").write_text("method: lora\n")
    assert find_recipe("mine", tmp_path) == tmp_path / "recipes" / "mine.yaml"
    assert find_recipe("mine.yaml", tmp_path) == tmp_path / "recipes" / "mine.yaml"
    with pytest.raises(RecipeError, match=r"^nope: no such recipe file \(nor in .*/recipes\)$"):
        find_recipe("nope", tmp_path)


def test_the_shipped_recipes_read_and_check(workspace):
    from tui_ft.engine.runs import validate_config

    shipped = sorted((REPO / "recipes").glob("*.yaml"))
    assert [p.name for p in shipped] == ["dpo-concise.yaml", "qlora-1b.yaml", "reward-concise.yaml", "veloria-lora.yaml"]
    for path in shipped:
        config = config_from_recipe(read_recipe(path))
        if config.model == "default":  # the Hub one is checked by reading only: no network here
            assert validate_config(config, workspace) == [], path.name
    veloria = config_from_recipe(read_recipe(REPO / "recipes" / "veloria-lora.yaml"))
    assert (veloria.epochs, veloria.lr, veloria.lora_rank, veloria.eval_split) == (8, 0.001, 16, 0.0)
    assert len(veloria.lora_targets) == 7


def test_train_config_flags_win_and_problems_point_at_the_recipe(workspace, tiny_model_dir):
    recipe = workspace / "recipes" / "tiny.yaml"
    recipe.parent.mkdir()
    recipe.write_text(f"model: {tiny_model_dir}\ndataset: seed_instructions_20.jsonl\nmethod: lora\n"
                      "lr: 0.0003\nbatch_size: 4\nlora_targets: [q_proj, v_proj]\n")
    made = cli(workspace, "train", "--config", "tiny", "--batch-size", "2", "--name", "from-recipe", "--create-only")
    assert made.returncode == 0, made.stderr
    config = json.loads((workspace / "checkpoints" / "from-recipe" / "run.json").read_text())
    assert (config["lr"], config["batch_size"], config["lora_targets"]) == (0.0003, 2, ["q_proj", "v_proj"])

    recipe.write_text(f"model: {tiny_model_dir}\ndataset: seed_instructions_20.jsonl\nmethod: lora\nlr: -1\n")
    refused = cli(workspace, "train", "--config", str(recipe), "--batch-size", "0")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [f"tui-ft: {recipe}:4: lr: must be a positive number, got -1.0",
                                           "tui-ft: command line: batch_size: must be at least 1, got 0"]
    recipe.write_text("method: lora\n")
    need = cli(workspace, "train", "--config", str(recipe))
    assert need.returncode == 2 and need.stderr.strip() == (
        "tui-ft: --model, --dataset needed (a flag, or a recipe's setting with --config)")
    assert [p.name for p in (workspace / "checkpoints").iterdir()] == ["from-recipe"]  # the refused ones made nothing


def test_runs_show_recipe_trains_the_same_run_again_and_metrics_export_as_csv(workspace, tiny_model_dir):
    run = workspace / "checkpoints" / "done"
    run.mkdir()
    config = TrainConfig(model=str(tiny_model_dir), dataset=str(workspace / "datasets" / "seed_instructions_20.jsonl"),
                         method="lora", name="done", lr=5e-4, max_steps=3, template="alpaca").resolved().to_dict()
    (run / "run.json").write_text(json.dumps(config | {"model_path": str(tiny_model_dir), "created": 1.0}))
    (run / "status.json").write_text(json.dumps({"state": "finished", "pid": None, "step": 3, "total_steps": 3}))
    records = [{"kind": "event", "step": 0, "epoch": 0.0, "time": 1.0, "event": "started"},
               {"kind": "train", "step": 1, "epoch": 0.5, "time": 2.0, "loss": 2.5, "lr": 5e-4},
               {"kind": "eval", "step": 1, "epoch": 0.5, "time": 3.0, "loss": 2.6, "ppl": 13.5},
               {"kind": "train", "step": 2, "epoch": 1.0, "time": 4.0, "loss": 2.25, "lr": 2.5e-4}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    shown = cli(workspace, "runs", "show", "done", "--recipe")
    assert shown.returncode == 0 and shown.stdout.startswith("# tui-ft recipe of run done: ")
    (workspace / "again.yaml").write_text(shown.stdout)
    again = config_from_recipe(read_recipe(workspace / "again.yaml"))
    assert again.to_dict() == config | {"name": None}  # every setting, the name left for the new run
    plain = cli(workspace, "runs", "show", "done")
    assert plain.stdout.splitlines()[0] == "done: finished at step 3/3"
    assert "  lr                      0.0005" in plain.stdout.splitlines()

    exported = cli(workspace, "runs", "export", "done", "--csv")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert exported.returncode == 0 and len(rows) == 4
    assert list(rows[0])[:4] == ["kind", "step", "epoch", "time"] and {"loss", "lr", "ppl", "event"} <= set(rows[0])
    assert [(r["kind"], r["step"], r["loss"]) for r in rows] == [
        ("event", "0", ""), ("train", "1", "2.5"), ("eval", "1", "2.6"), ("train", "2", "2.25")]
    to_file = cli(workspace, "runs", "export", "done", "--csv", "m.csv")
    assert to_file.returncode == 0 and (workspace / "m.csv").read_text() == exported.stdout
    assert to_file.stderr.strip() == "4 records to m.csv"
    twice = cli(workspace, "runs", "export", "done", "--csv", "m.csv")
    assert twice.returncode == 2 and twice.stderr.strip() == "tui-ft: m.csv: already exists"
