"""``tui-ft data check|show`` as a user runs them: exit codes, one ``PATH:LINE: message`` a problem.

``data check`` runs in a subprocess (the real entry point, the real stdout encoding); ``data
show`` on a valid file runs in-process to reuse the loaded tokenizer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tui_ft.cli import main
from tui_ft.engine.data import Example, find_datasets
from tui_ft.engine.data.templates import tokenize_example

REPO = Path(__file__).resolve().parents[2]
TUI_FT = Path(sys.executable).parent / "tui-ft"


def tui_ft(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(TUI_FT), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_check_passes_every_shipped_dataset():
    paths = [str(p.relative_to(REPO)) for p in find_datasets(REPO / "datasets")]  # scripts beside them are not datasets
    assert len(paths) >= 4
    result = tui_ft("data", "check", *paths, cwd=REPO)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr.splitlines() == [f"{path}: ok" for path in paths]


BAD_FILES: dict[str, bytes] = {
    "fields.jsonl": b'{"instruction": "a", "response": "b"}\n{"instruction": "a", "response": }\n\n'
    b'{"instruction": "a"}\n{"instruction": " ", "response": "b"}\n{"instruction": "a", "response": ["b"]}\n',
    "chat.jsonl": b'{"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}\n'
    b'{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}\n',
    "mixed.jsonl": b'{"question": "q", "answer": "a"}\n{"prompt": "p", "chosen": "a", "rejected": "b"}\n',
    "latin1.jsonl": b'{"question": "q", "answer": "a"}\n{"question": "caf\xe9", "answer": "a"}\n',
    "empty.jsonl": b"",
    "truncated.json": b'[\n  {"question": "q", "answer": "a"},\n  {"question": "q2",\n   "answer": "a',
    "elements.json": b'[\n  {"question": "q", "answer": "a"},\n  "loose text",\n  {"question": "q", "answer": ""}\n]\n',
    "rows.csv": b'question,answer\n"a question\non two lines",fine\n\nq3,\n',
    "notes.txt": b"hello\n",
    "surrogate.json": b'[{"\\ud800": "x"}]',
    "ok.jsonl": b'{"question": "q", "answer": "a"}\n',
}

EXPECTED = [
    "fields.jsonl:2: invalid JSON: unexpected character, expected a JSON value (column 34)",
    "fields.jsonl:4: missing field 'response' or 'output' or 'completion'",
    "fields.jsonl:5: field 'instruction' is empty",
    "fields.jsonl:6: field 'response' must be a string, got list",
    "chat.jsonl:1: message 2 has unknown role 'robot' (expected assistant, system, user)",
    "chat.jsonl:2: the conversation has no assistant turn to train on",
    "mixed.jsonl:2: a preference record in a qa file (line 1): formats are mixed",
    "latin1.jsonl:2: not UTF-8 text (byte 18 of the line)",
    "empty.jsonl:1: the file is empty",
    "truncated.json:4: truncated JSON: the file ends inside an element",
    "elements.json:3: expected a JSON object, got a string",
    "elements.json:4: field 'answer' is empty",
    "rows.csv:5: field 'answer' is empty",
    "notes.txt:1: unsupported file type '.txt' (use .jsonl, .json, .csv or .parquet)",
    "surrogate.json:1: invalid JSON: no low surrogate in string",
    "missing.jsonl: no such file in {home} or {home}/datasets",  # a whole-file problem has no line
]


def test_check_reports_every_problem_on_one_line_and_exits_1(tmp_path):
    for name, content in BAD_FILES.items():
        (tmp_path / name).write_bytes(content)
    result = tui_ft("data", "check", *BAD_FILES, "missing.jsonl", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [line.format(home=tmp_path.resolve()) for line in EXPECTED]
    assert result.stderr == "ok.jsonl: ok\n"


def test_check_one_valid_file_exits_0(tmp_path):
    (tmp_path / "ok.csv").write_text(
        'messages\n"[{""role"": ""user"", ""content"": ""hi""}, {""role"": ""assistant"", ""content"": ""yo""}]"\n'
    )
    result = tui_ft("data", "check", "ok.csv", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "ok.csv: ok\n")


def test_show_reports_a_bad_file_and_a_bad_value_without_traceback(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"question": "q"}\n')
    result = tui_ft("data", "show", "bad.jsonl", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "tui-ft: bad.jsonl:1: missing field 'answer'\n")
    result = tui_ft("data", "show", "bad.jsonl", "--max-length", "0", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, "tui-ft: --max-length must be at least 1, got 0\n")


def test_show_prints_format_stats_and_the_rendered_example(tmp_path, tokenizer, default_model_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short relative path: rich wraps long lines at 80 columns
    records = [{"instruction": "What is the capital of France?", "response": "Paris."}, {"instruction": "Say hi.", "response": "Hi!"}]
    path = tmp_path / "two.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    examples = [Example([{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["response"]}]) for r in records]
    lengths = [tokenize_example(e, tokenizer, "alpaca") for e in examples]
    status = main(
        ["--home", str(tmp_path), "data", "show", "two.jsonl", "--template", "alpaca", "--examples", "1",
         "--max-length", str(len(lengths[1].input_ids))]
    )
    out = capsys.readouterr().out
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "two.jsonl: instruction, 2 examples, template alpaca"
    longest, shortest = max(t.full_length for t in lengths), min(t.full_length for t in lengths)
    assert lines[1] == (
        f"tokens per example: min {shortest}, median {(longest + shortest) / 2:g}, max {longest}; 1 over max length {shortest}"
    )
    first = tokenize_example(examples[0], tokenizer, "alpaca", max_length=shortest)
    assert first.truncated and first.trained_tokens < lengths[0].trained_tokens
    assert f"line 1: {shortest} tokens, {first.trained_tokens} trained" in out  # truncated to max length
    assert "### Instruction:\nWhat is the capital of France?\n\n### Response:\n" in out
    assert "Traceback" not in out
