"""``tui-ft eval``: JSON output, stored results, and one clear line for each user mistake."""

from __future__ import annotations

import orjson
import pytest

from tui_ft.cli import main


def _run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_eval_perplexity_json_then_served_from_store(workspace, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("COLUMNS", "250")  # the table's model column holds a long temporary path
    argv = ["--home", str(workspace), "eval", str(tiny_model_dir), "--perplexity", "datasets/seed_instructions_20.jsonl",
            "--template", "alpaca", "--json"]
    status, out, err = _run(capsys, *argv)
    assert status == 0, err
    [record] = orjson.loads(out)["results"]
    assert record["dataset"] == "datasets/seed_instructions_20.jsonl" and record["model"] == str(tiny_model_dir)
    assert record["perplexity"] > 1 and record["tokens"] > 100 and record["cached"] is False
    status, out, _ = _run(capsys, *argv)
    assert orjson.loads(out)["results"][0]["cached"] is True
    status, out, _ = _run(capsys, *argv[:-1])  # the table
    assert status == 0 and "seed_instructions_20" in out and f"{record['perplexity']:.3f}" in out and "stored" in out


def test_eval_choice_benchmark_table(workspace, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(workspace)
    bench = workspace / "mc.jsonl"
    bench.write_text('{"question": "Pick.", "choices": ["a", "b b b b b b b b"], "answer": "a"}\n')
    status, out, err = _run(capsys, "--home", str(workspace), "eval", str(tiny_model_dir), "--benchmark", str(bench), "--json")
    assert status == 0, err
    [record] = orjson.loads(out)["results"]
    assert record["scorer"] == "choice" and record["n"] == 1 and record["score"] == 1.0
    assert record["items"][0]["reply"] == "a" and record["benchmark"] == "mc.jsonl"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["default"], 2, "tui-ft: nothing to evaluate: give --benchmark PATH, --perplexity PATH or --reward RUN --prompts PATH"),
        (["nope-model", "--benchmark", "datasets/seed_benchmark.jsonl"], 2, "tui-ft: nope-model: unknown model"),
        (["default", "--benchmark", "missing.jsonl"], 1, "tui-ft: missing.jsonl: no such file in "),
        (["default", "--benchmark", "datasets/seed_benchmark.jsonl", "--max-new-tokens", "0"], 2,
         "tui-ft: --max-new-tokens must be at least 1, got 0"),
        (["default", "--benchmark", "datasets/seed_benchmark.jsonl", "--checkpoint", "step-1"], 2,
         "tui-ft: default: --checkpoint needs a run"),
        (["default", "--benchmark", "datasets/seed_benchmark.jsonl", "--scorer", "choice"], 1,
         "tui-ft: datasets/seed_benchmark.jsonl:1: no 'choices' for the choice scorer"),
    ],
)
def test_eval_user_errors_are_one_line(workspace, capsys, monkeypatch, args, status, message):
    monkeypatch.chdir(workspace)
    code, out, err = _run(capsys, "--home", str(workspace), "eval", *args)
    assert code == status
    first = err.strip().splitlines()[0]
    assert message in first and "Traceback" not in err and out == ""
    assert err.startswith("tui-ft: "), err  # the message first: no blank line from a progress bar before it
    if "choice" not in message:
        assert len(err.strip().splitlines()) == 1


def test_eval_invalid_benchmark_lists_path_line_problems(workspace, capsys, monkeypatch):
    monkeypatch.chdir(workspace)
    bad = workspace / "bad.jsonl"
    bad.write_text('{"instruction": "Q1", "expected": "A"}\n{"instruction": "Q2", "expected": ""}\nnot json\n')
    code, out, err = _run(capsys, "--home", str(workspace), "eval", "default", "--benchmark", "bad.jsonl")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 2 and "Traceback" not in err
    assert lines[0].startswith("tui-ft: bad.jsonl:2: ") and lines[1].startswith("tui-ft: bad.jsonl:3: ")


def test_eval_detach_prints_the_job_folder(workspace, capsys, monkeypatch, tiny_model_dir):
    from tui_ft.engine.evaluation import jobs

    launched = []
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda cmd, **kw: launched.append((cmd, kw)) or type("P", (), {"pid": 4242})())
    monkeypatch.chdir(workspace)
    code, out, err = _run(capsys, "--home", str(workspace), "eval", str(tiny_model_dir), "--benchmark",
                          "datasets/seed_benchmark.jsonl", "--max-new-tokens", "5", "--detach")
    assert code == 0, err
    job_dir = workspace / "bench" / "jobs" / out.strip().rsplit("/", 1)[-1]
    assert out.strip() == str(job_dir)
    [(cmd, options)] = launched
    assert cmd[-2:] == ["tui_ft.engine.evaluation.worker", str(job_dir)] and options["start_new_session"] is True
    job = orjson.loads((job_dir / "job.json").read_bytes())
    assert job["max_new_tokens"] == 5 and job["benchmarks"] == [str(workspace / "datasets" / "seed_benchmark.jsonl")]
    status = orjson.loads((job_dir / "status.json").read_bytes())
    assert (status["state"], status["pid"], status["total"]) == ("queued", 4242, 5)
