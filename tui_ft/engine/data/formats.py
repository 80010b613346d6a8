"""Dataset formats: detection from keys, validation with ``path:line`` problems, normalisation.

Every supported record becomes one of three shapes the rest of the engine understands:

- :class:`Example` — a conversation (optional system prompt, user and assistant turns) used
  for supervised fine-tuning; instruction, QA and chat records all become examples;
- :class:`PreferencePair` — a prompt with a chosen and a rejected reply (DPO);
- :class:`BenchmarkItem` — a prompt with an expected answer and optional choices;
- :class:`PromptItem` — a prompt alone (human-evaluation sheets, chat starters).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tui_ft.engine.data.readers import SUFFIXES, DatasetError, Problem, read_records

FORMATS = ("instruction", "qa", "chat", "preference", "benchmark", "prompts")
SFT_FORMATS = ("instruction", "qa", "chat")  # what supervised fine-tuning trains on
ROLES = {"system", "user", "assistant"}
# ShareGPT speakers, mapped to chat roles.
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass
class Example:
    """A conversation for supervised fine-tuning: alternating user and assistant turns."""

    messages: list[dict[str, str]]
    line: int = 0
    input: str = ""  # Alpaca's optional input, shown under "### Input:" after the first instruction


@dataclass
class PreferencePair:
    """A prompt with a preferred (chosen) and a dispreferred (rejected) reply."""

    prompt: str
    chosen: str
    rejected: str
    line: int = 0
    system: str = ""


@dataclass
class BenchmarkItem:
    """A benchmark question with its expected answer, and choices for multiple choice."""

    prompt: str
    expected: str
    choices: list[str] = field(default_factory=list)
    line: int = 0


@dataclass
class PromptItem:
    """A prompt with no reference answer, for human evaluation and chat."""

    prompt: str
    line: int = 0


@dataclass
class Dataset:
    """A validated dataset file: its format and its normalised records."""

    path: Path
    format: str
    records: list
    problems: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


def detect_format(record: dict) -> str | None:
    """Name the format a record's keys imply, or ``None`` when no format fits."""
    keys = set(record)
    if "messages" in keys or "conversations" in keys:
        return "chat"
    if "chosen" in keys or "rejected" in keys:
        return "preference"
    if "expected" in keys or "choices" in keys:
        return "benchmark"
    if "answer" in keys and keys & {"instruction", "prompt"} and not keys & {"question", "response", "output", "completion"}:
        return "benchmark"  # DESIGN.md: a benchmark's prompt is instruction|question|prompt, its answer expected|answer
    if "instruction" in keys:
        return "instruction"
    if "question" in keys or "answer" in keys:
        return "qa"
    if "prompt" in keys and ("completion" in keys or "response" in keys):
        return "instruction"
    if "prompt" in keys:
        return "prompts"
    return None


def _text(record: dict, keys: tuple[str, ...], required: bool = True) -> tuple[str, str | None]:
    """Return ``(value, problem)`` for the first present key of ``keys``."""
    for key in keys:
        if key in record and record[key] is not None:
            value = record[key]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)  # CSV and spreadsheets turn answers such as 7 into numbers
            if not isinstance(value, str):
                return "", f"field '{key}' must be a string, got {type(value).__name__}"
            if required and not value.strip():
                return "", f"field '{key}' is empty"
            return value, None
    if required:
        names = " or ".join(f"'{k}'" for k in keys)
        return "", f"missing field {names}"
    return "", None


def _instruction(record: dict, line: int) -> Example | str:
    instruction, problem = _text(record, ("instruction", "prompt"))
    if problem:
        return problem
    response, problem = _text(record, ("response", "output", "completion"))
    if problem:
        return problem
    extra, problem = _text(record, ("input", "context"), required=False)
    if problem:
        return problem
    system, problem = _text(record, ("system",), required=False)
    if problem:
        return problem
    messages = [{"role": "system", "content": system}] if system.strip() else []
    messages += [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
    return Example(messages, line, input=extra)


def _qa(record: dict, line: int) -> Example | str:
    question, problem = _text(record, ("question",))
    if problem:
        return problem
    answer, problem = _text(record, ("answer",))
    if problem:
        return problem
    return Example([{"role": "user", "content": question}, {"role": "assistant", "content": answer}], line)


def _chat(record: dict, line: int) -> Example | str:
    sharegpt = "messages" not in record
    key = "conversations" if sharegpt else "messages"
    turns = record[key]
    if not isinstance(turns, list):
        return f"field '{key}' must be a list of messages, got {type(turns).__name__}"
    if not turns:
        return f"field '{key}' is empty"
    role_key, text_key = ("from", "value") if sharegpt else ("role", "content")
    messages = []
    for index, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            return f"message {index} must be an object with '{role_key}' and '{text_key}'"
        role = turn.get(role_key)
        if not isinstance(role, str):
            return f"message {index} has no '{role_key}'"
        mapped = SHAREGPT_ROLES.get(role) if sharegpt else (role if role in ROLES else None)
        if mapped is None:
            known = ", ".join(sorted(SHAREGPT_ROLES if sharegpt else ROLES))
            return f"message {index} has unknown role {role!r} (expected {known})"
        content = turn.get(text_key)
        if not isinstance(content, str):
            return f"message {index} has no text in '{text_key}'"
        if mapped == "system" and index != 1:
            return f"message {index}: a system message must come first"
        messages.append({"role": mapped, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        return "the conversation has no assistant turn to train on"
    if messages[-1]["role"] != "assistant":
        return "the conversation must end with an assistant turn"
    for index, message in enumerate(messages, start=1):
        if message["role"] != "system" and not message["content"].strip():
            return f"message {index} is empty"
    return Example(messages, line)


def _preference(record: dict, line: int) -> PreferencePair | str:
    prompt, problem = _text(record, ("prompt", "instruction", "question"))
    if problem:
        return problem
    chosen, problem = _text(record, ("chosen",))
    if problem:
        return problem
    rejected, problem = _text(record, ("rejected",))
    if problem:
        return problem
    system, problem = _text(record, ("system",), required=False)
    if problem:
        return problem
    if chosen == rejected:
        return "'chosen' and 'rejected' are identical: the pair teaches nothing"
    return PreferencePair(prompt, chosen, rejected, line, system)


def _benchmark(record: dict, line: int) -> BenchmarkItem | str:
    prompt, problem = _text(record, ("instruction", "question", "prompt"))
    if problem:
        return problem
    expected, problem = _text(record, ("expected", "answer"))
    if problem:
        return problem
    choices = record.get("choices") or []
    if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
        return "field 'choices' must be a list of non-empty strings"
    if choices and expected not in choices:
        return f"the expected answer {expected!r} is not one of the choices"
    return BenchmarkItem(prompt, expected, list(choices), line)


def _prompt(record: dict, line: int) -> PromptItem | str:
    prompt, problem = _text(record, ("prompt",))
    return problem or PromptItem(prompt, line)


PARSERS = {"instruction": _instruction, "qa": _qa, "chat": _chat, "preference": _preference, "benchmark": _benchmark, "prompts": _prompt}


def iter_parsed(path: Path) -> Iterator[tuple[str | None, object]]:
    """Yield ``(format, record_or_problem)`` for each entry, checking that formats do not mix."""
    name = str(path)
    file_format: str | None = None
    first_line = 0
    for line, record in read_records(path):
        if isinstance(record, Problem):
            yield None, record
            continue
        detected = detect_format(record)
        if detected is None:
            keys = _shown_keys(record)
            yield None, Problem(name, line, f"cannot tell the format from the keys ({keys})")
            continue
        if file_format is None:
            file_format, first_line = detected, line
        elif detected != file_format:
            message = f"a {detected} record in a {file_format} file (line {first_line}): formats are mixed"
            yield None, Problem(name, line, message)
            continue
        parsed = PARSERS[detected](record, line)
        if isinstance(parsed, str):
            yield None, Problem(name, line, parsed)
        else:
            yield detected, parsed


def _shown_keys(record: dict, most: int = 8, width: int = 40) -> str:
    """The record's keys for a one-line message: control characters escaped, long lists cut."""
    keys = sorted(map(str, record))
    shown = ["".join(c if c.isprintable() else ascii(c)[1:-1] for c in key[:width]) for key in keys[:most]]
    if len(keys) > most:
        shown.append(f"and {len(keys) - most} more")
    return ", ".join(shown) or "none"


def load_dataset(path: str | Path, strict: bool = True) -> Dataset:
    """Read and validate a dataset file.

    Args:
        path: The file to read.
        strict: Raise :class:`DatasetError` listing every problem when there is any; when
            false, return the valid records with the problems attached.
    """
    path = Path(path)
    if not path.exists():
        where = "" if path.is_absolute() else f" in {path.absolute().parent}"  # relative: say which folder
        raise DatasetError([Problem(str(path), 0, f"no such file{where}")])
    if path.is_dir():
        raise DatasetError([Problem(str(path), 0, "is a folder, not a dataset file")])
    records, problems, file_format = [], [], None
    for detected, item in iter_parsed(path):
        if isinstance(item, Problem):
            problems.append(item)
        else:
            file_format = detected
            records.append(item)
    if not records and not problems:
        problems.append(Problem(str(path), 1, "the file holds no records"))
    if strict and problems:
        raise DatasetError(problems)
    return Dataset(path, file_format or "unknown", records, problems)


def check_dataset(path: str | Path) -> list[Problem]:
    """Return every problem in a dataset file (empty when it is valid)."""
    try:
        return load_dataset(path, strict=False).problems
    except DatasetError as error:
        return error.problems


def find_datasets(folder: Path) -> list[Path]:
    """List the dataset files under ``folder``, sorted, by supported suffix."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


PREFERENCE_METHODS = ("dpo", "reward")  # what trains on prompt/chosen/rejected pairs


def trainable_formats(method: str) -> tuple[str, ...]:
    """The formats ``method`` trains on: preference pairs for DPO and a reward model, conversations for the others."""
    return ("preference",) if method in PREFERENCE_METHODS else SFT_FORMATS


def training_refusal(method: str, file_format: str) -> str | None:
    """Why a ``file_format`` file cannot train with ``method``, or ``None`` when it can.

    A benchmark would train on its own answers (and then score perfectly on itself), and
    preference pairs used for SFT would silently drop every rejected reply: both are refused
    rather than converted.
    """
    if file_format in trainable_formats(method):
        return None
    if method in PREFERENCE_METHODS:
        what = "DPO" if method == "dpo" else "a reward model"
        return f"{what} needs a preference dataset (prompt, chosen, rejected), got {file_format}"
    return {
        "benchmark": "a benchmark is for scoring (tui-ft eval --benchmark, or the Benchmark pane), not for training: "
                     "choose an instruction, QA or chat file",
        "preference": "preference pairs train with DPO (--method dpo) or a reward model (--method reward): "
                      "choose an instruction, QA or chat file",
        "prompts": "a prompts file has no replies to train on",
    }.get(file_format, f"cannot train on a {file_format} file: choose an instruction, QA or chat file")


def sft_examples(dataset: Dataset) -> list[Example]:
    """The dataset's records as training conversations (QA and benchmark items included)."""
    if dataset.format == "benchmark":
        return [
            Example([{"role": "user", "content": i.prompt}, {"role": "assistant", "content": i.expected}], i.line)
            for i in dataset.records
        ]
    if dataset.format == "preference":
        return [_pair_as_example(pair, pair.chosen) for pair in dataset.records]
    if dataset.format == "prompts":
        return []  # nothing to train on: prompts have no reply
    return list(dataset.records)


def _pair_as_example(pair: PreferencePair, reply: str) -> Example:
    messages = [{"role": "system", "content": pair.system}] if pair.system else []
    messages += [{"role": "user", "content": pair.prompt}, {"role": "assistant", "content": reply}]
    return Example(messages, pair.line)


def preference_examples(pair: PreferencePair) -> tuple[Example, Example]:
    """The chosen and the rejected conversation of a preference pair."""
    return _pair_as_example(pair, pair.chosen), _pair_as_example(pair, pair.rejected)


def prompt_items(dataset: Dataset) -> list[PromptItem]:
    """Each record's first user message, as a prompt to answer: a prompt sheet, or any other file's questions.

    A reward evaluation (``tui-ft eval --reward``) answers these; a file's reference replies,
    if any, are ignored.
    """
    if dataset.format == "prompts":
        return list(dataset.records)
    if dataset.format in ("benchmark", "preference"):
        return [PromptItem(record.prompt, record.line) for record in dataset.records]
    items = []
    for example in dataset.records:  # instruction, qa and chat files
        user = next((m["content"] for m in example.messages if m["role"] == "user"), None)
        if user is None:  # a chat record of system and assistant turns only: nothing was asked
            continue
        items.append(PromptItem(f"{user}\n\n{example.input}" if example.input else user, example.line))
    return items


def benchmark_items(dataset: Dataset) -> list[BenchmarkItem]:
    """The dataset's records as benchmark items; QA and instruction files count as benchmarks too."""
    if dataset.format == "benchmark":
        return list(dataset.records)
    if dataset.format in ("qa", "instruction"):
        items = []
        for example in dataset.records:
            user = [m["content"] for m in example.messages if m["role"] == "user"]
            reply = [m["content"] for m in example.messages if m["role"] == "assistant"]
            items.append(BenchmarkItem(user[0], reply[-1], [], example.line))
        return items
    raise DatasetError([Problem(str(dataset.path), 1, f"a {dataset.format} file is not a benchmark")])
