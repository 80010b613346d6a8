"""The dataset readers: line numbers, tolerated layouts, and every way a file can be unreadable.

Each bad input is checked through :func:`check_dataset`, so the test sees exactly the
``path:line: message`` lines a user sees.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest

from tui_ft.engine.data import check_dataset, load_dataset
from tui_ft.engine.data.readers import DatasetError, Problem, file_kind, read_records

QA = '{"question": "q%d", "answer": "a%d"}'


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def lines_of(path: Path) -> list[int]:
    return [line for line, record in read_records(path) if isinstance(record, dict)]


def problems_of(path: Path) -> list[tuple[int, str]]:
    """Every problem as (line, message), after checking each formats as ``path:line: message`` (``path: message`` for line 0)."""
    problems = check_dataset(path)
    for problem in problems:
        assert problem.path == str(path)
        assert str(problem) == (f"{path}:{problem.line}: {problem.message}" if problem.line else f"{path}: {problem.message}")
    return [(p.line, p.message) for p in problems]


def test_file_kind_by_suffix():
    assert [file_kind(Path(n)) for n in ("a.jsonl", "a.NDJSON", "a.json", "a.CSV", "a.parquet", "a.txt")] == [
        "jsonl", "jsonl", "json", "csv", "parquet", None,
    ]


# --- JSONL -----------------------------------------------------------------------------------


def test_jsonl_tolerates_bom_crlf_and_blank_lines(tmp_path):
    text = "\ufeff" + QA % (1, 1) + "\r\n\r\n" + QA % (2, 2) + "\r\n   \r\n\n" + QA % (3, 3)  # no final newline
    path = write(tmp_path, "a.jsonl", text)
    assert lines_of(path) == [1, 3, 6]
    dataset = load_dataset(path)
    assert [e.messages[1]["content"] for e in dataset.records] == ["a1", "a2", "a3"]
    assert [e.line for e in dataset.records] == [1, 3, 6]


def test_jsonl_invalid_json_and_non_object_lines(tmp_path):
    path = write(tmp_path, "a.jsonl", "\n".join([QA % (1, 1), '{"question": "q2", "answer": }', "", "[1, 2]", '"text"', QA % (6, 6)]))
    problems = problems_of(path)
    assert [line for line, _ in problems] == [2, 4, 5]
    assert problems[0][1].startswith("invalid JSON: ") and problems[0][1].endswith("(column 30)")
    assert problems[1:] == [(4, "expected a JSON object, got an array"), (5, "expected a JSON object, got a string")]
    assert [e.line for e in load_dataset(path, strict=False).records] == [1, 6]


def test_jsonl_non_utf8_names_the_line_and_byte(tmp_path):
    path = write(tmp_path, "a.jsonl", (QA % (1, 1)).encode() + b'\n{"question": "caf\xe9", "answer": "a"}\n' + (QA % (3, 3)).encode())
    assert problems_of(path) == [(2, "not UTF-8 text (byte 18 of the line)")]
    assert len(load_dataset(path, strict=False)) == 2


@pytest.mark.parametrize("content, message", [(b"", "the file is empty"), (b"\n \r\n\n", "the file holds no records")])
def test_jsonl_empty(tmp_path, content, message):
    assert problems_of(write(tmp_path, "a.jsonl", content)) == [(1, message)]


def test_jsonl_deep_nesting_and_huge_numbers_are_problems(tmp_path):
    deep = '{"question": ' + "[" * 5000 + "]" * 5000 + ', "answer": "a"}'
    big = '{"question": 1' + "1" * 5000 + ', "answer": "a"}'
    surrogate = '{"question": "\\ud800", "answer": "a"}'
    problems = problems_of(write(tmp_path, "a.jsonl", "\n".join([deep, big, surrogate])))
    assert [line for line, _ in problems] == [1, 2, 3]
    assert all(message.startswith("invalid JSON: ") for _, message in problems)


def test_jsonl_four_megabyte_record_validates_quickly(tmp_path):
    response = "word " * 800_000  # 4 MB on one line
    path = write(tmp_path, "big.jsonl", json.dumps({"instruction": "Repeat.", "response": response}) + "\n" + QA % (2, 2))
    assert path.stat().st_size > 4_000_000
    started = time.perf_counter()
    problems = check_dataset(path)
    elapsed = time.perf_counter() - started
    assert problems == [Problem(str(path), 2, "a qa record in a instruction file (line 1): formats are mixed")]
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    dataset = load_dataset(path, strict=False)
    assert dataset.records[0].messages[1]["content"] == response


def test_jsonl_streams_instead_of_loading_the_file(tmp_path):
    # 8 MB of 10 KB lines: a reader holding the whole file would peak above 8 MB.
    line = json.dumps({"instruction": "Say it.", "response": "x" * 10_000}) + "\n"
    path = write(tmp_path, "many.jsonl", line * 800)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for _, record in read_records(path) if isinstance(record, dict))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 800
    assert peak < size / 20, f"peak {peak} bytes for a {size}-byte file"


def test_utf16_and_utf32_files_are_named(tmp_path):
    text = QA % (1, 1) + "\n" + QA % (2, 2) + "\n"
    for encoding, shown in (("utf-16", "UTF-16"), ("utf-32", "UTF-32")):
        for suffix in ("jsonl", "json", "csv"):
            path = write(tmp_path, f"{encoding}.{suffix}", text.encode(encoding))
            assert problems_of(path) == [(1, f"the file is {shown} text; save it as UTF-8")]


# --- JSON ------------------------------------------------------------------------------------


def test_json_array_elements_report_their_first_line(tmp_path):
    text = (
        '\ufeff[\r\n  {"question": "q1",\r\n   "answer": "a1"},\r\n\r\n  [1],\r\n'
        '  {"question": "q3", "answer": "a3"}, "x",\r\n  null\r\n]\r\n'
    )
    path = write(tmp_path, "a.json", text)
    assert problems_of(path) == [
        (5, "expected a JSON object, got an array"), (6, "expected a JSON object, got a string"), (7, "expected a JSON object, got null"),
    ]
    assert [e.line for e in load_dataset(path, strict=False).records] == [2, 6]


def test_json_big_array_loads_in_linear_time(tmp_path):
    # 10,000 elements, 2.5 MB: counting lines from the file's start for each element took minutes.
    element = json.dumps({"question": "q", "answer": "word " * 45})
    path = write(tmp_path, "big.json", "[\n" + ",\n".join([element] * 10_000) + "\n]\n")
    started = time.perf_counter()
    dataset = load_dataset(path)
    elapsed = time.perf_counter() - started
    assert (len(dataset), dataset.records[-1].line) == (10_000, 10_001)
    assert elapsed < 3.0, f"took {elapsed:.2f} s"


def test_json_single_object_is_one_record(tmp_path):
    path = write(tmp_path, "a.json", '\n\n{"question": "q", "answer": "a"}\n')
    assert [e.line for e in load_dataset(path).records] == [3]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[{"question": "q", "answer": "a"},\n{"question": "q2", "ans', [(2, "truncated JSON: the file ends inside an element")]),
        ('[{"question": "q", "answer": "a"},\n {"question": "q2", "answer": "a"}\n',
         [(3, "truncated JSON: the array is not closed with ']'")]),
        ('[{"question": "q", "answer": "a"}\n {"question": "q2", "answer": "a"}]',
         [(2, "invalid JSON: expected ',' or ']' between elements")]),
        ('[{"question": "q", "answer": "a"},\n{"question": "q2" "answer": "a"},\n{}]', [(2, "invalid JSON: Expecting ',' delimiter")]),
        ('[{"question": "q", "answer": "a"}]\n\n]', [(3, "invalid JSON: extra data after the array")]),
        ('{"question": "q", "answer": "a"}\n{"question": "q", "answer": "a"}', [(2, "invalid JSON: extra data after the object")]),
        ('\n"just text"', [(2, "expected a JSON array of objects")]),
        ("  \n\t\n", [(1, "the file is empty")]),
        ("[]", [(1, "the file holds no records")]),
        ("[\n" + "[" * 100_000, [(2, "invalid JSON: nested too deeply")]),
        ('[\n{"question": 1' + "1" * 5000 + ', "answer": "a"}]', [(2, "invalid JSON: a number with too many digits")]),
        ('[{"question": "q", "answer": "a"},\n{"question": "\\ud800", "answer": "a"}]', [(2, "invalid JSON: no low surrogate in string")]),
        ('[{"question": "q", "answer": "a"},\n\n{"question": "q",\n "answer": NaN}]',
         [(4, "invalid JSON: unexpected character, expected a JSON value")]),
    ],
    ids=[
        "cut-inside-element", "array-not-closed", "missing-comma", "bad-element", "extra-after-array",
        "extra-after-object", "not-an-array", "only-space", "empty-array", "deep-nesting", "huge-number",
        "lone-surrogate", "nan",
    ],
)
def test_json_bad_structure(tmp_path, text, expected):
    assert problems_of(write(tmp_path, "a.json", text)) == expected


def test_json_non_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "a.json", b'[\n{"question": "q", "answer": "a"},\n{"question": "\xff", "answer": "a"}]')
    assert problems_of(path) == [(3, "not UTF-8 text")]


# --- CSV -------------------------------------------------------------------------------------


def test_csv_rows_report_their_first_line_after_multiline_cells_and_blank_lines(tmp_path):
    text = (
        "\ufeffquestion,answer\r\n"
        '"two\r\nlines",a1\r\n'  # lines 2-3
        "\r\n"  # blank line 4
        "q3,\r\n"  # line 5: empty answer
        '"three\nline\nquestion",a4\n'  # lines 6-8
        "q5,a5,extra\n"  # line 9
        "\n"
        ",\n"  # line 11: an empty row, skipped
        "q6\n"  # line 12: missing answer
    )
    path = write(tmp_path, "a.csv", text)
    assert problems_of(path) == [
        (5, "field 'answer' is empty"),
        (9, "more values than header columns"),
        (12, "missing field 'answer'"),
    ]
    dataset = load_dataset(path, strict=False)
    assert [(e.line, e.messages[0]["content"]) for e in dataset.records] == [(2, "two\r\nlines"), (6, "three\nline\nquestion")]


def test_csv_json_cells_only_in_list_columns(tmp_path):
    text = 'question,answer\nWhich list?,"[1, 2]"\n'
    assert load_dataset(write(tmp_path, "a.csv", text)).records[0].messages[1]["content"] == "[1, 2]"


def test_csv_cells_larger_than_the_csv_default_limit(tmp_path):
    answer = "y" * 300_000  # csv refuses cells over 128 KiB unless told otherwise
    path = write(tmp_path, "a.csv", f"question,answer\nq,{answer}\n")
    assert load_dataset(path).records[0].messages[1]["content"] == answer


def test_csv_unclosed_quote_and_bad_bytes(tmp_path):
    # An unterminated quote swallows the rest of the file: csv reads it as one cell.
    assert problems_of(write(tmp_path, "a.csv", 'question,answer\nq1,a1\n"q2,a2\nq3,a3\n')) == [(3, "missing field 'answer'")]
    assert problems_of(write(tmp_path, "b.csv", b"question,answer\nq1,a1\nq2,\xe9t\xe9\n")) == [(3, "not UTF-8 text")]
    assert problems_of(write(tmp_path, "c.csv", "\n\n")) == [(1, "the file is empty")]
    assert problems_of(write(tmp_path, "d.csv", "question,answer\n")) == [(1, "the file holds no records")]


# --- Parquet, files and folders ---------------------------------------------------------------


def test_parquet_rows_are_numbered_from_one(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": ""}]), path)
    assert problems_of(path) == [(2, "field 'answer' is empty")]
    assert lines_of(path) == [1, 2]


def test_damaged_parquet_is_a_problem(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q", "answer": "a"}] * 100), path)
    data = path.read_bytes()
    write(tmp_path, "cut.parquet", data[: len(data) // 2])
    write(tmp_path, "text.parquet", "question,answer\n")
    for name in ("cut.parquet", "text.parquet"):
        [(line, message)] = problems_of(tmp_path / name)
        assert line == 1 and message.startswith("not a readable Parquet file: ")


def test_unsupported_suffix_missing_file_and_folder(tmp_path):
    assert problems_of(write(tmp_path, "a.txt", QA % (1, 1))) == [(1, "unsupported file type '.txt' (use .jsonl, .json, .csv or .parquet)")]
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(DatasetError) as caught:
        load_dataset(missing)
    assert [str(p) for p in caught.value.problems] == [f"{missing}: no such file"]  # no line: the whole file
    assert str(caught.value) == f"{missing}: no such file"
    (tmp_path / "folder.jsonl").mkdir()
    assert problems_of(tmp_path / "folder.jsonl") == [(0, "is a folder, not a dataset file")]
