"""Dataset formats: detection from keys in every file type, normalisation, and field problems.

The same records are written as JSONL, JSON, CSV (chat columns as JSON strings) and Parquet;
each file type must give the same normalised records, with its own line numbers.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tui_ft.engine.data import (
    BenchmarkItem,
    Example,
    PreferencePair,
    PromptItem,
    benchmark_items,
    check_dataset,
    detect_format,
    find_datasets,
    load_dataset,
    preference_examples,
    sft_examples,
)
from tui_ft.engine.data.readers import DatasetError

REPO = Path(__file__).resolve().parents[2]
FILE_TYPES = ("jsonl", "json", "csv", "parquet")


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict:
    return {"role": "system", "content": text}


def write_records(folder: Path, stem: str, records: list[dict], file_type: str) -> tuple[Path, list[int]]:
    """Write ``records`` as ``file_type``; return the path and each record's expected line."""
    path = folder / f"{stem}.{file_type}"
    if file_type == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return path, [i + 1 for i in range(len(records))]
    if file_type == "json":
        # One element a line after "[": element i starts on line i + 2.
        path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n", encoding="utf-8")
        return path, [i + 2 for i in range(len(records))]
    if file_type == "csv":
        columns = list(dict.fromkeys(key for r in records for key in r))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        lines, line = [], 2
        for record in records:
            cells = [_cell(record.get(c)) for c in columns]
            writer.writerow(cells)
            lines.append(line)
            line += 1 + sum(cell.count("\n") for cell in cells)
        path.write_text(buffer.getvalue(), encoding="utf-8")
        return path, lines
    import pyarrow as pa
    import pyarrow.parquet as pq

    # from_pylist takes the columns from the first row: give every row every column (null when absent).
    columns = list(dict.fromkeys(key for r in records for key in r))
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in records]), path)
    return path, [i + 1 for i in range(len(records))]


def _cell(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def with_lines(expected: list, lines: list[int]) -> list:
    for item, line in zip(expected, lines, strict=False):
        item.line = line
    return expected


# Each case: records as a user writes them, the detected format, and the normalised records.
CASES = {
    "instruction": (
        [{"instruction": "Name a colour.", "response": "Blue."}, {"instruction": "Say hi.", "response": "Hi!", "system": "Be brief."}],
        "instruction",
        lambda: [Example([user("Name a colour."), assistant("Blue.")]), Example([system("Be brief."), user("Say hi."), assistant("Hi!")])],
    ),
    "alpaca": (
        [
            {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
            {"instruction": "Greet.", "input": "", "output": "Hello."},
        ],
        "instruction",
        lambda: [Example([user("Add the numbers."), assistant("5")], input="2 and 3"), Example([user("Greet."), assistant("Hello.")])],
    ),
    "dolly": (
        [
            {"instruction": "When was it built?", "context": "The tower was\nbuilt in 1889.", "response": "In 1889.",
             "category": "closed_qa"},
        ],
        "instruction",
        lambda: [Example([user("When was it built?"), assistant("In 1889.")], input="The tower was\nbuilt in 1889.")],
    ),
    "prompt-completion": (
        [{"prompt": "2 + 2 =", "completion": "4"}],
        "instruction",
        lambda: [Example([user("2 + 2 ="), assistant("4")])],
    ),
    "qa": (
        [{"question": "Capital of Italy?", "answer": "Rome."}, {"question": "Capital of Peru?", "answer": "Lima."}],
        "qa",
        lambda: [Example([user("Capital of Italy?"), assistant("Rome.")]), Example([user("Capital of Peru?"), assistant("Lima.")])],
    ),
    "chat": (
        [
            {"messages": [system("You are terse."), user("Hi"), assistant("Hello."), user("Bye"), assistant("Bye.")]},
            {"messages": [user("One turn"), assistant("One reply")]},
        ],
        "chat",
        lambda: [
            Example([system("You are terse."), user("Hi"), assistant("Hello."), user("Bye"), assistant("Bye.")]),
            Example([user("One turn"), assistant("One reply")]),
        ],
    ),
    "sharegpt": (
        [
            {"conversations": [
                {"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"},
                {"from": "human", "value": "Thanks"}, {"from": "gpt", "value": "Welcome."},
            ]},
            {"conversations": [{"from": "user", "value": "Q"}, {"from": "assistant", "value": "A"}]},
        ],
        "chat",
        lambda: [
            Example([system("Be kind."), user("Hi"), assistant("Hello!"), user("Thanks"), assistant("Welcome.")]),
            Example([user("Q"), assistant("A")]),
        ],
    ),
    "preference": (
        [
            {"prompt": "Say hi.", "chosen": "Hello!", "rejected": "Go away."},
            {"prompt": "2+2?", "chosen": "4", "rejected": "5", "system": "Math."},
        ],
        "preference",
        lambda: [PreferencePair("Say hi.", "Hello!", "Go away."), PreferencePair("2+2?", "4", "5", system="Math.")],
    ),
    "benchmark": (
        [
            {"instruction": "What is 2 + 2?", "expected": "4"},
            {"instruction": "Pick the planet.", "expected": "Mars", "choices": ["Mars", "Moon"]},
        ],
        "benchmark",
        lambda: [BenchmarkItem("What is 2 + 2?", "4"), BenchmarkItem("Pick the planet.", "Mars", ["Mars", "Moon"])],
    ),
    "benchmark-question-expected": (
        [{"question": "Largest ocean?", "expected": "Pacific"}],
        "benchmark",
        lambda: [BenchmarkItem("Largest ocean?", "Pacific")],
    ),
    "benchmark-prompt-answer": (
        [{"prompt": "Colour of the sky?", "answer": "blue"}],
        "benchmark",
        lambda: [BenchmarkItem("Colour of the sky?", "blue")],
    ),
    "benchmark-instruction-answer": (
        [{"instruction": "3 * 3?", "answer": "9"}],
        "benchmark",
        lambda: [BenchmarkItem("3 * 3?", "9")],
    ),
    "prompts": (
        [{"prompt": "Write a poem."}, {"prompt": "Explain rain."}],
        "prompts",
        lambda: [PromptItem("Write a poem."), PromptItem("Explain rain.")],
    ),
}


@pytest.mark.parametrize("file_type", FILE_TYPES)
@pytest.mark.parametrize("case", CASES)
def test_every_format_in_every_file_type(tmp_path, case, file_type):
    records, expected_format, expected = CASES[case]
    path, lines = write_records(tmp_path, case, records, file_type)
    dataset = load_dataset(path)
    assert dataset.format == expected_format
    assert dataset.problems == []
    assert dataset.records == with_lines(expected(), lines)
    assert len(dataset) == len(records)


@pytest.mark.parametrize(
    "keys, expected",
    [
        (("instruction", "response"), "instruction"),
        (("instruction", "input", "output"), "instruction"),
        (("instruction", "context", "response", "category"), "instruction"),
        (("prompt", "completion"), "instruction"),
        (("prompt", "response"), "instruction"),
        (("question", "answer"), "qa"),
        (("messages",), "chat"),
        (("conversations",), "chat"),
        (("prompt", "chosen", "rejected"), "preference"),
        (("instruction", "expected"), "benchmark"),
        (("question", "expected", "choices"), "benchmark"),
        (("prompt", "answer"), "benchmark"),
        (("instruction", "answer"), "benchmark"),
        (("prompt",), "prompts"),
        (("text",), None),
        ((), None),
    ],
)
def test_detect_format_from_keys(keys, expected):
    assert detect_format(dict.fromkeys(keys, "x")) == expected


def problems_by_line(tmp_path: Path, lines: list[str], suffix: str = "jsonl") -> list[tuple[int, str]]:
    path = tmp_path / f"bad.{suffix}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = check_dataset(path)
    assert all(str(p) == f"{path}:{p.line}: {p.message}" for p in problems)
    return [(p.line, p.message) for p in problems]


def test_instruction_field_problems(tmp_path):
    rows = [
        {"instruction": "ok", "response": "ok"},
        {"instruction": "no reply"},
        {"instruction": "  ", "response": "x"},
        {"instruction": ["a"], "response": "x"},
        {"instruction": "x", "output": True},
        {"instruction": "x", "response": "y", "input": {"a": 1}},
        {"instruction": "x", "response": 42},  # spreadsheets turn answers into numbers: accepted as "42"
        {"instruction": None, "prompt": "fallback", "response": "y"},
    ]
    assert problems_by_line(tmp_path, [json.dumps(r) for r in rows]) == [
        (2, "missing field 'response' or 'output' or 'completion'"),
        (3, "field 'instruction' is empty"),
        (4, "field 'instruction' must be a string, got list"),
        (5, "field 'output' must be a string, got bool"),
        (6, "field 'input' must be a string, got dict"),
    ]
    records = load_dataset(tmp_path / "bad.jsonl", strict=False).records
    assert [(r.line, r.messages[0]["content"], r.messages[1]["content"]) for r in records] == [
        (1, "ok", "ok"), (7, "x", "42"), (8, "fallback", "y"),
    ]


def test_chat_problems(tmp_path):
    rows = [
        {"messages": [user("hi"), assistant("hello")]},
        {"messages": [user("hi"), {"role": "bot", "content": "hello"}]},
        {"messages": [user("hi"), user("anyone?")]},
        {"messages": [user("hi"), assistant("hello"), user("and?")]},
        {"messages": [user("hi"), system("late"), assistant("hello")]},
        {"messages": [user("hi"), assistant("  ")]},
        {"messages": []},
        {"messages": "hi"},
        {"messages": [user("hi"), "hello"]},
        {"messages": [user("hi"), {"content": "hello"}]},
        {"messages": [user("hi"), {"role": "assistant", "content": None}]},
    ]
    assert problems_by_line(tmp_path, [json.dumps(r) for r in rows]) == [
        (2, "message 2 has unknown role 'bot' (expected assistant, system, user)"),
        (3, "the conversation has no assistant turn to train on"),
        (4, "the conversation must end with an assistant turn"),
        (5, "message 2: a system message must come first"),
        (6, "message 2 is empty"),
        (7, "field 'messages' is empty"),
        (8, "field 'messages' must be a list of messages, got str"),
        (9, "message 2 must be an object with 'role' and 'content'"),
        (10, "message 2 has no 'role'"),
        (11, "message 2 has no text in 'content'"),
    ]


def test_sharegpt_problems(tmp_path):
    rows = [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "robot", "value": "hello"}]},
        {"conversations": [{"from": "human", "value": "hi"}]},
        {"conversations": [{"from": "human", "text": "hi"}, {"from": "gpt", "value": "x"}]},
    ]
    assert problems_by_line(tmp_path, [json.dumps(r) for r in rows]) == [
        (2, "message 2 has unknown role 'robot' (expected assistant, gpt, human, system, user)"),
        (3, "the conversation has no assistant turn to train on"),
        (4, "message 1 has no text in 'value'"),
    ]


def test_preference_benchmark_and_prompt_problems(tmp_path):
    preference = [
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"prompt": "p", "chosen": "same", "rejected": "same"},
        {"prompt": "p", "chosen": "a"},
        {"prompt": "", "chosen": "a", "rejected": "b"},
    ]
    assert problems_by_line(tmp_path, [json.dumps(r) for r in preference]) == [
        (2, "'chosen' and 'rejected' are identical: the pair teaches nothing"),
        (3, "missing field 'rejected'"),
        (4, "field 'prompt' is empty"),
    ]
    benchmark = [
        {"instruction": "q", "expected": "a", "choices": ["a", "b"]},
        {"instruction": "q", "expected": "c", "choices": ["a", "b"]},
        {"instruction": "q", "expected": "a", "choices": "a,b"},
        {"instruction": "q", "expected": "a", "choices": ["a", ""]},
        {"expected": "a"},
    ]
    assert problems_by_line(tmp_path, [json.dumps(r) for r in benchmark]) == [
        (2, "the expected answer 'c' is not one of the choices"),
        (3, "field 'choices' must be a list of non-empty strings"),
        (4, "field 'choices' must be a list of non-empty strings"),
        (5, "missing field 'instruction' or 'question' or 'prompt'"),
    ]
    assert problems_by_line(tmp_path, [json.dumps({"prompt": "fine"}), json.dumps({"prompt": 3.5}), json.dumps({"prompt": " "})]) == [
        (3, "field 'prompt' is empty"),
    ]


def test_mixed_formats_and_unknown_keys(tmp_path):
    lines = [
        json.dumps({"instruction": "a", "response": "b"}),
        json.dumps({"question": "a", "answer": "b"}),
        json.dumps({"messages": [user("a"), assistant("b")]}),
        json.dumps({"text": "raw", "label": 1}),
        json.dumps({}),
        json.dumps({"a\nb": 1, **{f"k{i}": i for i in range(9)}}),
    ]
    assert problems_by_line(tmp_path, lines) == [
        (2, "a qa record in a instruction file (line 1): formats are mixed"),
        (3, "a chat record in a instruction file (line 1): formats are mixed"),
        (4, "cannot tell the format from the keys (label, text)"),
        (5, "cannot tell the format from the keys (none)"),
        (6, "cannot tell the format from the keys (a\\nb, k0, k1, k2, k3, k4, k5, k6, and 2 more)"),
    ]


def test_csv_chat_columns_are_json_and_bad_json_is_a_type_problem(tmp_path):
    path = tmp_path / "chat.csv"
    good = json.dumps([user("hi"), assistant("hello")]).replace('"', '""')
    path.write_text(f'messages\n"{good}"\n"[{{not json]"\nplain\n', encoding="utf-8")
    assert [(p.line, p.message) for p in check_dataset(path)] == [
        (3, "field 'messages' must be a list of messages, got str"),
        (4, "field 'messages' must be a list of messages, got str"),
    ]
    assert load_dataset(path, strict=False).records == [Example([user("hi"), assistant("hello")], line=2)]


def test_strict_raises_every_problem_and_lenient_keeps_the_good_records(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n{"question": "q"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    assert [p.line for p in caught.value.problems] == [2, 3]
    assert str(caught.value).splitlines()[0] == f"{path}:2: missing field 'answer'"
    lenient = load_dataset(path, strict=False)
    assert (lenient.format, len(lenient), [p.line for p in lenient.problems]) == ("qa", 1, [2, 3])


def test_sft_preference_and_benchmark_views(tmp_path):
    path, _ = write_records(tmp_path, "pref", CASES["preference"][0], "jsonl")
    pairs = load_dataset(path)
    chosen, rejected = preference_examples(pairs.records[1])
    assert chosen == Example([system("Math."), user("2+2?"), assistant("4")], line=2)
    assert rejected == Example([system("Math."), user("2+2?"), assistant("5")], line=2)
    assert sft_examples(pairs) == [Example([user("Say hi."), assistant("Hello!")], line=1), chosen]

    path, _ = write_records(tmp_path, "bench", CASES["benchmark"][0], "jsonl")
    bench = load_dataset(path)
    assert sft_examples(bench) == [
        Example([user("What is 2 + 2?"), assistant("4")], 1), Example([user("Pick the planet."), assistant("Mars")], 2),
    ]
    assert benchmark_items(bench) == bench.records

    path, _ = write_records(tmp_path, "qa", CASES["qa"][0], "jsonl")
    assert benchmark_items(load_dataset(path)) == [
        BenchmarkItem("Capital of Italy?", "Rome.", [], 1), BenchmarkItem("Capital of Peru?", "Lima.", [], 2),
    ]

    path, _ = write_records(tmp_path, "prompts", CASES["prompts"][0], "jsonl")
    assert sft_examples(load_dataset(path)) == []

    path, _ = write_records(tmp_path, "chat", CASES["chat"][0], "jsonl")
    with pytest.raises(DatasetError) as caught:
        benchmark_items(load_dataset(path))
    assert [str(p) for p in caught.value.problems] == [f"{path}:1: a chat file is not a benchmark"]


def test_find_datasets_lists_supported_files_sorted(tmp_path):
    for name in ("b.jsonl", "a.csv", "sub/c.parquet", "notes.txt", "sub/d.JSON"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in find_datasets(tmp_path)] == ["a.csv", "b.jsonl", "sub/c.parquet", "sub/d.JSON"]
    assert find_datasets(tmp_path / "missing") == []


SHIPPED = {
    "seed_benchmark.jsonl": ("benchmark", 5),
    "seed_human_eval_prompts.jsonl": ("prompts", 4),
    "seed_instructions.jsonl": ("instruction", 8),
    "seed_instructions_20.jsonl": ("instruction", 20),
}


def test_every_shipped_dataset_is_valid():
    found = find_datasets(REPO / "datasets")
    assert found, "no shipped datasets"
    for path in found:
        dataset = load_dataset(path)
        assert dataset.problems == [] and len(dataset) > 0, path
        if path.name in SHIPPED:
            assert (dataset.format, len(dataset)) == SHIPPED[path.name], path.name
    assert set(SHIPPED) <= {p.name for p in found}
