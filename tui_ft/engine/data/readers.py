"""Read dataset files (JSONL, JSON, CSV, Parquet) into raw records with line numbers.

Every reader yields ``(line, record)`` pairs, where ``line`` is the JSONL line, the CSV row's
first line, the JSON array element's first line, or the Parquet row number (1-based), and
``record`` is either a dict or a :class:`Problem` describing why that entry could not be read.
Readers never raise for bad content: problems are data, so a validator can report them all.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
# Byte-order marks of encodings that are not UTF-8; spreadsheet tools on Windows write these.
OTHER_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
# CSV cells that hold JSON lists (a chat's turns, a benchmark's choices); other cells stay text,
# so an answer such as "[1, 2]" is not turned into a list.
CSV_JSON_COLUMNS = {"messages", "conversations", "choices"}
# csv's default cell limit (128 KiB) rejects long documents; a cell may be as big as a JSONL line.
CSV_FIELD_LIMIT = 1 << 30


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset file, located by line."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        # Line 0: the problem is the whole file's (missing, a folder), not a line's.
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


class DatasetError(Exception):
    """A dataset that cannot be used; carries every problem found, each with its line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def file_kind(path: Path) -> str | None:
    """Return the reader name for a file suffix (``jsonl``, ``json``, ``csv``, ``parquet``)."""
    return SUFFIXES.get(path.suffix.lower())


def read_records(path: Path) -> Iterator[tuple[int, dict | Problem]]:
    """Yield ``(line, record_or_problem)`` for every entry of a dataset file."""
    name = str(path)
    kind = file_kind(path)
    if kind is None:
        yield 1, Problem(name, 1, f"unsupported file type {path.suffix!r} (use .jsonl, .json, .csv or .parquet)")
        return
    try:
        if path.stat().st_size == 0:
            yield 1, Problem(name, 1, "the file is empty")
            return
        reader = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}[kind]
        yield from reader(path, name)
    except OSError as error:
        yield 1, Problem(name, 1, f"cannot read the file: {error.strerror or error}")


def _read_jsonl(path: Path, name: str) -> Iterator[tuple[int, dict | Problem]]:
    # Line by line in binary: a huge file is never held whole, and a bad byte names its line.
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            elif number == 1 and (encoding := _other_encoding(raw)):
                yield 1, Problem(name, 1, f"the file is {encoding} text; save it as UTF-8")
                return
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield number, Problem(name, number, f"not UTF-8 text (byte {error.start + 1} of the line)")
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as error:
                yield number, Problem(name, number, f"invalid JSON: {error.msg} (column {error.colno})")
                continue
            if not isinstance(value, dict):
                yield number, Problem(name, number, f"expected a JSON object, got {_json_type(value)}")
                continue
            yield number, value


def _other_encoding(data: bytes) -> str | None:
    return next((encoding for bom, encoding in OTHER_BOMS if data.startswith(bom)), None)


def _decode_whole(path: Path, name: str) -> str | Problem:
    data = path.read_bytes()
    if encoding := _other_encoding(data):
        return Problem(name, 1, f"the file is {encoding} text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return Problem(name, line, "not UTF-8 text")


def _read_json(path: Path, name: str) -> Iterator[tuple[int, dict | Problem]]:
    text = _decode_whole(path, name)
    if isinstance(text, Problem):
        yield text.line, text
        return
    # orjson cannot report where each array element starts, and the user needs element
    # lines; the stdlib decoder's raw_decode walks the array element by element instead.
    decoder = json.JSONDecoder()
    lines = _LineCounter(text)
    position = _skip_space(text, 0)
    if position == len(text):
        yield 1, Problem(name, 1, "the file is empty")
        return
    if text[position] == "{":
        line = lines.at(position)
        value, end = _decode_element(decoder, text, position, line, name)
        yield (value.line if isinstance(value, Problem) else line), value
        if end >= 0:
            yield from _extra_data(text, end, name, "object")
        return
    if text[position] != "[":
        line = _line_of(text, position)
        yield line, Problem(name, line, "expected a JSON array of objects")
        return
    position = _skip_space(text, position + 1)
    first = True
    while True:
        if position >= len(text):
            line = _line_of(text, len(text))
            yield line, Problem(name, line, "truncated JSON: the array is not closed with ']'")
            return
        if text[position] == "]":
            break
        if not first:
            if text[position] != ",":
                line = _line_of(text, position)
                yield line, Problem(name, line, "invalid JSON: expected ',' or ']' between elements")
                return
            position = _skip_space(text, position + 1)
        first = False
        line = lines.at(position)
        value, position = _decode_element(decoder, text, position, line, name)
        if isinstance(value, Problem):
            yield value.line, value
            if position < 0:
                return  # the element's end is unknown: nothing after it can be located
        elif isinstance(value, dict):
            yield line, value
        else:
            yield line, Problem(name, line, f"expected a JSON object, got {_json_type(value)}")
        position = _skip_space(text, position)
    yield from _extra_data(text, position + 1, name, "array")


def _extra_data(text: str, position: int, name: str, what: str) -> Iterator[tuple[int, Problem]]:
    rest = _skip_space(text, position)
    if rest < len(text):
        line = _line_of(text, rest)
        yield line, Problem(name, line, f"invalid JSON: extra data after the {what}")


def _decode_element(decoder: json.JSONDecoder, text: str, start: int, line: int, name: str) -> tuple[object, int]:
    """Decode the JSON value at ``start`` (on ``line``); return ``(value or Problem, end)``, end -1 when lost."""
    try:
        _, end = decoder.raw_decode(text, start)
    except json.JSONDecodeError as error:
        # A string left open runs to the end of the file: the stdlib names where it started.
        truncated = error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string")
        message = "truncated JSON: the file ends inside an element" if truncated else f"invalid JSON: {error.msg}"
        return Problem(name, error.lineno, message), -1
    except RecursionError:
        return Problem(name, line, "invalid JSON: nested too deeply"), -1
    except ValueError:  # a number past Python's int conversion limit (4300 digits)
        return Problem(name, line, "invalid JSON: a number with too many digits"), -1
    # Parse the element again with orjson, which JSONL uses: both file types then accept the
    # same values (the stdlib decoder lets lone surrogates, NaN and Infinity through).
    try:
        return orjson.loads(text[start:end]), end
    except orjson.JSONDecodeError as error:
        return Problem(name, line + error.lineno - 1, f"invalid JSON: {error.msg}"), end


class _LineCounter:
    """Line numbers of positions met in increasing order, counting only the text in between.

    Counting from the start of the file for every element made a 20 MB array take minutes.
    """

    def __init__(self, text: str):
        self.text, self.position, self.line = text, 0, 1

    def at(self, position: int) -> int:
        if position < self.position:
            return _line_of(self.text, position)
        self.line += self.text.count("\n", self.position, position)
        self.position = position
        return self.line


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _read_csv(path: Path, name: str) -> Iterator[tuple[int, dict | Problem]]:
    text = _decode_whole(path, name)
    if isinstance(text, Problem):
        yield text.line, text
        return
    csv.field_size_limit(CSV_FIELD_LIMIT)
    # csv.reader rather than DictReader: DictReader skips blank lines silently, which shifted
    # every later row's reported line; here each row's first line is the previous row's end + 1.
    rows = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    start = 1
    try:
        for row in rows:
            line, start = start, rows.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # blank lines are tolerated anywhere
            if header is None:
                header = row
                continue
            if len(row) > len(header):
                yield line, Problem(name, line, "more values than header columns")
                continue
            yield line, {key: _csv_value(key, value) for key, value in zip(header, row, strict=False)}
    except csv.Error as error:
        yield start, Problem(name, start, f"invalid CSV: {error}")
        return
    if header is None:
        yield 1, Problem(name, 1, "the file is empty")


def _csv_value(key: str, value: str):
    # Chat columns (messages, conversations, choices) hold JSON in a CSV cell.
    stripped = value.strip()
    if key in CSV_JSON_COLUMNS and stripped.startswith("[") and stripped.endswith("]"):
        try:
            return orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return value
    return value


def _read_parquet(path: Path, name: str) -> Iterator[tuple[int, dict | Problem]]:
    import pyarrow.parquet as pq  # only Parquet users pay for pyarrow

    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        yield 1, Problem(name, 1, f"not a readable Parquet file: {_one_line(error)}")
        return
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                row += 1
                yield row, record
    except Exception as error:  # a damaged row group surfaces only while reading it
        yield row + 1, Problem(name, row + 1, f"not a readable Parquet file: {_one_line(error)}")


def _one_line(error: Exception) -> str:
    # pyarrow's messages span several lines; a problem is one line.
    return " ".join(str(error).split())


def _json_type(value) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
