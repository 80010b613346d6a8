"""Fuzz the dataset reader with generated files: records come back, or a DatasetError whose
every problem is a one-line ``path:line: message`` with the file's path and a line inside the
file. Nothing else may escape.

Hypothesis runs derandomized (a fixed seed), so the same files are tried on every run and
the table this test writes into ``docs/reliability.md`` only changes when the test does.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui_ft.engine.data import FORMATS, BenchmarkItem, Example, PreferencePair, PromptItem, load_dataset
from tui_ft.engine.data.readers import DatasetError, Problem

REPORT = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
START, END = "<!-- datasets:start -->", "<!-- datasets:end -->"
TEXT_SUFFIXES = (".jsonl", ".json", ".csv")
ALL_SUFFIXES = (*TEXT_SUFFIXES, ".parquet")
RECORD_TYPES = (Example, PreferencePair, BenchmarkItem, PromptItem)
# Problems about the whole file rather than one line (reported at line 1).
FILE_LEVEL = ("the file is empty", "the file holds no records", "the file is UTF-16", "the file is UTF-32")

FIELDS = (
    "instruction", "input", "output", "response", "context", "category", "question", "answer", "messages",
    "conversations", "prompt", "chosen", "rejected", "expected", "choices", "completion", "system",
)
ROLES = ("system", "user", "assistant", "human", "gpt", "bot", "", "USER")
CODECS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252", "shift_jis", "utf-8-sig", "cp500", "koi8-r")

# --- generated content -----------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6
)
turns = st.lists(
    st.fixed_dictionaries(
        {}, optional={"role": st.sampled_from(ROLES) | scalars, "content": scalars, "from": st.sampled_from(ROLES), "value": scalars}
    ),
    max_size=4,
)
odd_records = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values | turns, max_size=5)
words = st.text(min_size=1, max_size=20)


@st.composite
def valid_records(draw) -> list[dict]:
    """A list of records of one format, with generated (possibly blank) text."""
    kind = draw(st.sampled_from(("instruction", "alpaca", "qa", "chat", "sharegpt", "preference", "benchmark", "prompts")))
    count = draw(st.integers(1, 4))
    make = {
        "instruction": lambda: {"instruction": draw(words), "response": draw(words)},
        "alpaca": lambda: {"instruction": draw(words), "input": draw(words), "output": draw(words)},
        "qa": lambda: {"question": draw(words), "answer": draw(words)},
        "chat": lambda: {"messages": [{"role": "user", "content": draw(words)}, {"role": "assistant", "content": draw(words)}]},
        "sharegpt": lambda: {"conversations": [{"from": "human", "value": draw(words)}, {"from": "gpt", "value": draw(words)}]},
        "preference": lambda: {"prompt": draw(words), "chosen": draw(words), "rejected": draw(words)},
        "benchmark": lambda: {"question": draw(words), "expected": draw(words)},
        "prompts": lambda: {"prompt": draw(words)},
    }[kind]
    return [make() for _ in range(count)]


def as_file(records: list[dict], suffix: str, crlf: bool = False, blank_lines: bool = False) -> bytes:
    """Serialise records the way a user's tools would: JSONL, a JSON array, CSV or Parquet."""
    newline = "\r\n" if crlf else "\n"
    if suffix == ".jsonl":
        lines = [json.dumps(r, ensure_ascii=False) for r in records]
        return (newline * (2 if blank_lines else 1)).join(lines).encode("utf-8", "surrogatepass")
    if suffix == ".json":
        return json.dumps(records, indent=2 if blank_lines else None, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if suffix == ".csv":
        columns = list(dict.fromkeys(str(k) for r in records for k in r)) or ["empty"]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator=newline)
        writer.writerow(columns)
        for record in records:
            writer.writerow([v if isinstance(v, str) else json.dumps(v) for v in (record.get(c, "") for c in columns)])
        return buffer.getvalue().encode("utf-8", "surrogatepass")
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys(k for r in records for k in r))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in records]), sink)
    return sink.getvalue().to_pybytes()


@st.composite
def random_bytes(draw):
    return draw(st.sampled_from(ALL_SUFFIXES)), draw(st.binary(max_size=3000))


@st.composite
def deep_nesting(draw):
    depth = draw(st.integers(1, 30_000))
    opener, closer = draw(st.sampled_from((("[", "]"), ('{"a": ', "}"))))
    nested = opener * depth + "1" + (closer * depth if draw(st.booleans()) else "")
    suffix = draw(st.sampled_from(TEXT_SUFFIXES))
    if suffix == ".csv":  # the JSON list columns are decoded: nest inside one
        return suffix, ('messages\n"' + nested.replace('"', '""') + '"\n').encode()
    text = nested if draw(st.booleans()) else '{"question": ' + nested + ', "answer": "a"}'
    return suffix, (("[" + text + "]") if suffix == ".json" and draw(st.booleans()) else text).encode()


@st.composite
def huge_strings(draw):
    size = draw(st.sampled_from((1_000, 100_000, 1_000_000)))
    huge = draw(st.characters(exclude_categories=("Cs",))) * size
    place = draw(st.sampled_from(("instruction", "response", "key", "role")))
    record = {"instruction": "Repeat.", "response": "ok"}
    if place == "key":
        record[huge] = "x"
    elif place == "role":
        record = {"messages": [{"role": huge, "content": "x"}, {"role": "assistant", "content": "y"}]}
    else:
        record[place] = huge
    suffix = draw(st.sampled_from(ALL_SUFFIXES))
    return suffix, as_file([record, {"instruction": "Again.", "response": "ok"}], suffix)


@st.composite
def wrong_types(draw):
    suffix = draw(st.sampled_from(TEXT_SUFFIXES))
    records = draw(st.lists(odd_records, min_size=1, max_size=4))
    return suffix, as_file(records, suffix, crlf=draw(st.booleans()), blank_lines=draw(st.booleans()))


@st.composite
def odd_encodings(draw):
    suffix = draw(st.sampled_from(TEXT_SUFFIXES))
    text = as_file(draw(valid_records()), suffix).decode("utf-8", "surrogatepass")
    return suffix, text.encode(draw(st.sampled_from(CODECS)), "replace")


@st.composite
def mutated_files(draw):
    suffix = draw(st.sampled_from(ALL_SUFFIXES))
    data = bytearray(as_file(draw(valid_records()), suffix, crlf=draw(st.booleans()), blank_lines=draw(st.booleans())))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(("truncate", "flip", "insert", "delete")))
        if how == "truncate":
            del data[at:]
        elif how == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from((b"\n", b"\r", b'"', b",", b"\xef\xbb\xbf", b"\x00")))
        else:
            del data[at : at + draw(st.integers(1, 16))]
    return suffix, bytes(data)


@st.composite
def mixed_records(draw):
    suffix = draw(st.sampled_from(TEXT_SUFFIXES))
    records = [r for _ in range(draw(st.integers(1, 3))) for r in draw(valid_records())]
    return suffix, as_file(records, suffix, crlf=draw(st.booleans()), blank_lines=draw(st.booleans()))


# Each fault: its strategy and how many files to try (the issue asks for thousands: about 3000
# in all, about 20 s on this shared 2-core machine).
FAULTS = {
    "random bytes": (random_bytes(), 600),
    "deep nesting (to 30,000 levels)": (deep_nesting(), 300),
    "huge strings (to 1 MB: value, key, role)": (huge_strings(), 150),
    "wrong types and unknown keys": (wrong_types(), 450),
    "odd encodings (UTF-16/32, Latin-1, Shift-JIS, EBCDIC...)": (odd_encodings(), 450),
    "valid files truncated, flipped, cut or spliced": (mutated_files(), 600),
    "formats mixed in one file, CRLF, blank lines": (mixed_records(), 450),
}


# --- the property ----------------------------------------------------------------------------


def line_bound(data: bytes, suffix: str) -> int:
    """The last line a problem may name: every line break counted (CSV counts a lone CR)."""
    bound = data.count(b"\n") + data.count(b"\r") + 1
    return max(bound, 10_000) if suffix == ".parquet" else bound  # Parquet lines are row numbers


def outcome_of(path: Path, data: bytes) -> str:
    """Load ``path``; return "records" or "DatasetError" after checking the contract."""
    try:
        dataset = load_dataset(path)
    except DatasetError as error:
        assert error.problems
        for problem in error.problems:
            assert isinstance(problem, Problem) and problem.path == str(path)
            assert type(problem.line) is int and 0 <= problem.line <= line_bound(data, path.suffix), problem
            line = str(problem)
            assert line == f"{path}:{problem.line}: {problem.message}"
            assert "\n" not in line and "\r" not in line, line
            line.encode("utf-8")  # printable: a lone surrogate here crashed `tui-ft data check`
            if path.suffix == ".jsonl" and not problem.message.startswith(FILE_LEVEL):
                assert data.split(b"\n")[problem.line - 1].strip(), f"{problem} names a blank line"
        return "DatasetError"
    assert dataset.records and not dataset.problems and dataset.format in FORMATS
    assert all(isinstance(record, RECORD_TYPES) for record in dataset.records)
    return "records"


def fuzz_fault(fault: str, strategy, examples: int, folder: str, counter, tally: dict[str, Counter]) -> None:
    """Try one fault's ``examples`` cases, counting their outcomes in ``tally["fault|suffix"]``."""

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case):
        suffix, data = case
        path = Path(folder) / f"case{next(counter)}{suffix}"
        path.write_bytes(data)
        try:
            tally[f"{fault}|{suffix}"][outcome_of(path, data)] += 1
        finally:
            path.unlink()

    check()


def run_fuzz() -> dict[str, dict[str, int]]:
    """Try every fault; return the outcomes as ``{"fault|suffix": {outcome: count}}``."""
    tally: dict[str, Counter] = defaultdict(Counter)
    with tempfile.TemporaryDirectory(prefix="fuzz_datasets_") as folder:
        counter = iter(range(10**9))
        for fault, (strategy, examples) in FAULTS.items():
            fuzz_fault(fault, strategy, examples, folder, counter, tally)
    return {key: dict(outcomes) for key, outcomes in tally.items()}


def test_fuzz_dataset_reader():
    # Hypothesis mixes constants from every local module imported so far into what it draws,
    # so inside a full pytest session the same seed would try other files than when this test
    # runs alone. A fresh interpreter imports the same modules every time: the table is stable.
    result = subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONHASHSEED": "0"}
    )
    assert result.returncode == 0, result.stderr[-8000:]
    tally = {tuple(key.split("|")): Counter(outcomes) for key, outcomes in json.loads(result.stdout).items()}
    files = sum(sum(c.values()) for c in tally.values())
    assert files >= 0.9 * sum(examples for _, examples in FAULTS.values())
    assert {fault for fault, _ in tally} == set(FAULTS)
    assert all(set(c) <= {"records", "DatasetError"} for c in tally.values())
    if os.environ.get("TUI_FT_WRITE_REPORT") == "1":  # `make report`: a plain test run leaves the file alone
        write_report(tally, files)


# --- the report ------------------------------------------------------------------------------


def write_report(tally: dict[tuple[str, str], Counter], files: int) -> None:
    """Rewrite this test's section of docs/reliability.md (between its markers), atomically."""
    rows = [
        f"| {fault} | {suffix} | {sum(c.values())} | {c['records']} | {c['DatasetError']} | 0 |"
        for (fault, suffix), c in sorted(tally.items(), key=lambda item: (list(FAULTS).index(item[0][0]), item[0][1]))
    ]
    section = "\n".join(
        [
            START,
            "## Bad dataset files (fuzz)",
            "",
            f"Written by `tests/reliability/test_fuzz_datasets.py`: {files} generated files (hypothesis, fixed seed),",
            "each read with `load_dataset`. Contract: it returns records or raises `DatasetError` whose every",
            "problem is one printable line `path:line: message`, with the file's path and a line inside the file",
            "(for JSONL, a non-blank line). Any other exception fails the test, so that column is always 0.",
            "",
            "| fault | file type | files | records returned | DatasetError (path:line) | other exception |",
            "|---|---|---:|---:|---:|---:|",
            *rows,
            END,
        ]
    )
    replace_section(REPORT, section)


def replace_section(path: Path, section: str) -> None:
    """Put ``section`` between its markers in ``path`` (the shared helper in ``report.py``).

    Imported here, not at the top: the fuzz runs this file as a script, and Hypothesis draws
    constants from every local module imported, so a new import would change the files tried.
    """
    from report import replace_section as replace

    replace(path, section)


def test_replace_section_keeps_other_sections(tmp_path):
    report = tmp_path / "reliability.md"
    report.write_text(f"# R\n\n<!-- runs:start -->\nkill -9 table\n<!-- runs:end -->\n\n{START}\nold\n{END}\n\ntail\n")
    replace_section(report, f"{START}\nnew\n{END}")
    assert report.read_text() == f"# R\n\n<!-- runs:start -->\nkill -9 table\n<!-- runs:end -->\n\n{START}\nnew\n{END}\n\ntail\n"
    fresh = tmp_path / "fresh.md"
    replace_section(fresh, f"{START}\nx\n{END}")
    assert fresh.read_text().endswith(f"\n\n{START}\nx\n{END}\n") and fresh.read_text().startswith("# Reliability")


if __name__ == "__main__":  # the fuzz itself, run in a fresh interpreter by test_fuzz_dataset_reader
    print(json.dumps(run_fuzz()))
