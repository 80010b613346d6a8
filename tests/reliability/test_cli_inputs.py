"""Every CLI value a user can get wrong: one clear line on stderr, a non-zero exit, no traceback, and
no run folder left behind.

Most cases call ``tui_ft.cli.main`` in-process (they fail in milliseconds); a few run
``python -m tui_ft`` in subprocesses, as a user would. argparse's own refusals (a type or a
choice) are one line too: the CLI's parser replaces argparse's usage block with a pointer
to ``--help``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tui_ft.cli import main

from report import Section
from workers import new_run

TRAIN = ["train", "--model", "{tiny}", "--dataset", "seed_instructions.jsonl", "--method", "lora"]
CHAT = ["chat", "{tiny}", "--prompt", "hi"]
EVAL = ["eval", "{tiny}", "--perplexity", "seed_instructions.jsonl"]
# id: (arguments after --home, a fragment the error line must hold)
CASES = {
    "lr-zero": (TRAIN + ["--lr", "0"], "lr: must be a positive number"),
    "lr-negative": (TRAIN + ["--lr", "-1"], "lr: must be a positive number"),
    "lr-negative-exponent": (TRAIN + ["--lr=-1e-4"], "lr: must be a positive number"),
    # argparse reads "-1e-4" after a space as an option, not a number: still a one-line refusal.
    "lr-negative-exponent-spaced": (TRAIN + ["--lr", "-1e-4"], "argument --lr: expected one argument"),
    "lr-nan": (TRAIN + ["--lr", "nan"], "lr: must be a positive number"),
    "lr-text": (TRAIN + ["--lr", "fast"], "argument --lr: invalid float value"),
    "batch-zero": (TRAIN + ["--batch-size", "0"], "batch_size: must be at least 1"),
    "batch-negative": (TRAIN + ["--batch-size", "-2"], "batch_size: must be at least 1"),
    "batch-fraction": (TRAIN + ["--batch-size", "1.5"], "argument --batch-size: invalid int value"),
    "epochs-zero": (TRAIN + ["--epochs", "0"], "epochs: must be at least 1"),
    "epochs-negative": (TRAIN + ["--epochs", "-3"], "epochs: must be at least 1"),
    "max-steps-zero": (TRAIN + ["--max-steps", "0"], "max_steps: must be at least 1"),
    "max-steps-negative": (TRAIN + ["--max-steps", "-5"], "max_steps: must be at least 1"),
    "grad-accum-zero": (TRAIN + ["--grad-accum", "0"], "grad_accum: must be at least 1"),
    "lora-rank-zero": (TRAIN + ["--lora-rank", "0"], "lora_rank: must be at least 1"),
    "lora-rank-negative": (TRAIN + ["--lora-rank", "-8"], "lora_rank: must be at least 1"),
    "lora-alpha-negative": (TRAIN + ["--lora-alpha", "-1"], "lora_alpha: must be a positive number"),
    "max-length-zero": (TRAIN + ["--max-length", "0"], "max_length: must be at least 16"),
    "max-length-negative": (TRAIN + ["--max-length", "-512"], "max_length: must be at least 16"),
    "max-length-beyond-model": (TRAIN + ["--max-length", "100000"], "the model handles at most 512 tokens"),
    "save-every-negative": (TRAIN + ["--save-every", "-1"], "save_every: must be 0 (only on stop) or more"),
    "seed-negative": (TRAIN + ["--seed", "-1"], "seed: must be 0 or more"),
    "nproc-zero": (TRAIN + ["--nproc", "0"], "nproc: must be at least 1"),
    "freeze-beyond-layers": (["train", "--model", "{tiny}", "--dataset", "seed_instructions.jsonl", "--method", "freeze",
                              "--freeze-layers", "5"], "the model has 2 layers"),
    "freeze-negative": (["train", "--model", "{tiny}", "--dataset", "seed_instructions.jsonl", "--method", "freeze",
                         "--freeze-layers", "-1"], "freeze_layers: must be 0 or more"),
    "method-unknown": (["train", "--model", "{tiny}", "--dataset", "seed_instructions.jsonl", "--method", "sft"],
                       "argument --method: invalid choice"),
    "template-unknown": (TRAIN + ["--template", "llama3"], "argument --template: invalid choice"),
    "device-unknown": (TRAIN + ["--device", "tpu"], "device: must be auto, cpu"),
    "set-no-equals": (TRAIN + ["--set", "warmup"], "expected KEY=VALUE"),
    "set-unknown-key": (TRAIN + ["--set", "colour=red"], "colour: unknown setting"),
    "set-bad-number": (TRAIN + ["--set", "warmup_ratio=lots"], "warmup_ratio: cannot read 'lots' as float"),
    "set-warmup-one": (TRAIN + ["--set", "warmup_ratio=1"], "warmup_ratio: must be in [0, 1)"),
    "set-dropout-one": (TRAIN + ["--set", "lora_dropout=1"], "lora_dropout: must be in [0, 1)"),
    "set-keep-zero": (TRAIN + ["--set", "keep_checkpoints=0"], "keep_checkpoints: must be at least 1"),
    "set-scheduler-unknown": (TRAIN + ["--set", "scheduler=step"], "scheduler: must be one of"),
    "set-lora-target-missing": (TRAIN + ["--set", "lora_targets=c_attn"], "this model has no module 'c_attn'"),
    "name-taken": (TRAIN + ["--name", "taken"], "a run named 'taken' already exists"),
    "model-unknown": (["train", "--model", "llama-9000", "--dataset", "seed_instructions.jsonl", "--method", "lora"],
                      "llama-9000: unknown model"),
    "model-missing-folder": (["train", "--model", "/nonexistent/model", "--dataset", "seed_instructions.jsonl",
                              "--method", "lora"], "/nonexistent/model: unknown model"),
    "model-no-weights": (["train", "--model", "{empty}", "--dataset", "seed_instructions.jsonl", "--method", "lora"],
                         "not a model folder"),
    "dataset-missing": (["train", "--model", "{tiny}", "--dataset", "missing.jsonl", "--method", "lora"],
                        "missing.jsonl: no such file in "),
    "eval-dataset-missing": (TRAIN + ["--eval-dataset", "missing.jsonl"], "missing.jsonl: no such file in "),
    "dataset-invalid-line": (["train", "--model", "{tiny}", "--dataset", "{broken}", "--method", "lora"],
                             "broken.jsonl:2: missing field 'response'"),
    "dataset-empty": (["train", "--model", "{tiny}", "--dataset", "{blank}", "--method", "lora"], "blank.jsonl:1: the file is empty"),
    "dataset-prompts-only": (["train", "--model", "{tiny}", "--dataset", "seed_human_eval_prompts.jsonl", "--method", "lora"],
                             "a prompts file has no replies to train on"),
    "lora-on-a-benchmark": (["train", "--model", "{tiny}", "--dataset", "seed_benchmark.jsonl", "--method", "lora"],
                            "a benchmark is for scoring"),
    "lora-on-pairs": (["train", "--model", "{tiny}", "--dataset", "dpo_concise.jsonl", "--method", "lora"],
                      "preference pairs train with DPO (--method dpo)"),
    "dpo-without-pairs": (["train", "--model", "{tiny}", "--dataset", "seed_instructions.jsonl", "--method", "dpo"],
                          "DPO needs a preference dataset"),
    "chat-temperature-negative": (CHAT + ["--temperature", "-0.5"], "temperature must be 0 or more"),
    "chat-top-p-zero": (CHAT + ["--top-p", "0"], "top-p must be in (0, 1]"),
    "chat-top-p-above-one": (CHAT + ["--top-p", "1.5"], "top-p must be in (0, 1]"),
    "chat-top-k-negative": (CHAT + ["--top-k", "-1"], "top-k must be 0 or more"),
    "chat-max-new-tokens-zero": (CHAT + ["--max-new-tokens", "0"], "max new tokens must be at least 1"),
    "chat-repetition-penalty-zero": (CHAT + ["--repetition-penalty", "0"], "repetition penalty must be above 0"),
    "chat-empty-prompt": (["chat", "{tiny}", "--prompt", "  "], "--prompt is empty"),
    "chat-model-unknown": (["chat", "llama-9000", "--prompt", "hi"], "llama-9000: unknown model"),
    "eval-nothing": (["eval", "{tiny}"], "nothing to evaluate: give --benchmark PATH, --perplexity PATH or --reward RUN --prompts PATH"),
    "eval-dataset-missing-file": (["eval", "{tiny}", "--perplexity", "missing.jsonl"], "missing.jsonl: no such file in "),
    "eval-benchmark-invalid": (["eval", "{tiny}", "--benchmark", "{broken}"], "broken.jsonl:2: missing field"),
    "eval-max-length-one": (EVAL + ["--max-length", "1"], "--max-length must be at least 2"),
    "eval-max-new-tokens-zero": (["eval", "{tiny}", "--benchmark", "seed_benchmark.jsonl", "--max-new-tokens", "0"],
                                 "--max-new-tokens must be at least 1"),
    "eval-model-unknown": (["eval", "llama-9000", "--perplexity", "seed_instructions.jsonl"], "llama-9000: unknown model"),
    "eval-checkpoint-of-a-model": (EVAL + ["--checkpoint", "step-5"], "--checkpoint needs a run"),
    "runs-stop-unknown": (["runs", "stop", "nope"], "nope: no such run"),
    "runs-resume-unknown": (["runs", "resume", "nope"], "nope: no such run"),
    "runs-resume-finished": (["runs", "resume", "finished-run"], "finished-run has already finished"),
    "export-unknown": (["export", "nope", "--merged", "{out}"], "nope: no such run"),
    "export-no-weights": (["export", "taken", "--merged", "{out}"], "taken has no weights to export yet"),
    "data-check-missing": (["data", "check", "missing.jsonl"], "missing.jsonl: no such file in "),
}
IN_SUBPROCESS = ("lr-negative", "batch-fraction", "chat-temperature-negative", "eval-nothing", "dataset-invalid-line")

SECTION = Section(
    "cli",
    "Bad command-line values",
    [
        "Written by `tests/reliability/test_cli_inputs.py`: each value once, through `tui_ft.cli.main` in-process, and",
        f"{len(IN_SUBPROCESS)} of them again as `python -m tui_ft` subprocesses. Every one exits non-zero with no traceback",
        "and leaves no new run folder; every refusal is one line, argparse's own included. "
        "`data check` prints its findings on stdout, the others on stderr. `TINY` is a tiny model folder,",
        "`WORKSPACE` the test's workspace.",
    ],
    ["bad input", "command (… = the usual model, dataset and method)", "exit", "lines", "error line"],
    list(CASES),
)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    SECTION.write_if_complete()


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory, tiny_model_dir):
    """One workspace for every case: the datasets, a taken run name, a finished run, bad files."""
    from conftest import REPO

    home = tmp_path_factory.mktemp("cli_home")
    shutil.copytree(REPO / "datasets", home / "datasets")
    (home / "checkpoints").mkdir()
    new_run(home, tiny_model_dir, name="taken", max_steps=1)
    finished = new_run(home, tiny_model_dir, name="finished-run", max_steps=1)
    (finished / "status.json").write_text('{"state": "finished", "step": 1, "total_steps": 1}')
    (home / "broken.jsonl").write_text('{"instruction": "hi", "response": "hello"}\n{"instruction": "no reply"}\n')
    (home / "blank.jsonl").write_text("")
    (home / "empty-model").mkdir()
    (home / "empty-model" / "config.json").write_text("{}")
    return home


def argv_for(case: str, home, tiny) -> list[str]:
    values = {"tiny": str(tiny), "broken": str(home / "broken.jsonl"), "blank": str(home / "blank.jsonl"),
              "empty": str(home / "empty-model"), "out": str(home / "exported")}
    return ["--home", str(home)] + [part.format(**values) for part in CASES[case][0]]


def run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses by exiting
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_refusal(case: str, code: int, out: str, err: str, home) -> list[str]:
    if case.startswith("data-"):  # `data check` reports problems as its output, on stdout
        out, err = "", out + err
    lines = err.strip().splitlines()
    assert code not in (0, None), (case, code, out, err)
    assert "Traceback" not in err and lines, (case, err)
    assert CASES[case][1] in lines[-1], (case, err)
    assert len(lines) == 1, (case, err)
    if not case.startswith("data-"):  # an error, not a checker's finding: it says which program speaks
        assert lines[0].startswith("tui-ft: "), (case, err)
    assert not out.strip() or case.startswith("runs-"), (case, out)  # nothing on stdout (no run folder printed)
    assert sorted(p.name for p in (home / "checkpoints").iterdir()) == ["finished-run", "taken"], case
    assert not (home / "exported").exists(), case
    return lines


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_value_is_refused_in_one_line(case, cli_home, tiny_model_dir, capsys):
    code, out, err = run_in_process(argv_for(case, cli_home, tiny_model_dir), capsys)
    lines = check_refusal(case, code, out, err, cli_home)
    args = CASES[case][0]
    for base in (TRAIN, CHAT, EVAL):
        if args[: len(base)] == base and len(args) > len(base):
            args = args[:1] + ["…"] + args[len(base):]
    command = " ".join(args).format(tiny="TINY", broken="broken.jsonl", blank="blank.jsonl", empty="empty-model", out="OUT")
    shown = lines[-1].replace(str(cli_home), "WORKSPACE").replace(str(tiny_model_dir), "TINY")
    SECTION.add(case, case.replace("-", " "), f"`{command}`", code, len(lines),
                shown[:150] + ("…" if len(shown) > 150 else ""))


def test_bad_values_in_real_processes(cli_home, tiny_model_dir):
    processes = {case: subprocess.Popen([sys.executable, "-m", "tui_ft", *argv_for(case, cli_home, tiny_model_dir)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for case in IN_SUBPROCESS}
    for case, process in processes.items():
        out, err = process.communicate(timeout=120)
        check_refusal(case, process.returncode, out, err, cli_home)
