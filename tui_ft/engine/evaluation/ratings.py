"""Human ratings of chat replies: helpfulness, accuracy and clarity, 1–5 (the seed's evaluation sheet).

A run keeps its ratings in ``checkpoints/<run>/ratings.jsonl``; any other model (``default``, a
folder, a cached model) in ``<home>/ratings/<reference-slug>.jsonl``. One JSON object a line,
appended and flushed per line; readers skip a torn line left by a writer that died mid-line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tui_ft.engine.files import open_append, read_tail
from tui_ft.engine.workspace import find_run_dir, reference_slug

RATINGS_FILE = "ratings.jsonl"
RATING_FIELDS = ("helpfulness", "accuracy", "clarity")
MAX_RATINGS_BYTES = 64 << 20  # ratings.jsonl: a line is a prompt and a reply; 64 MiB is thousands of ratings
MIN_SCORE, MAX_SCORE = 1, 5


@dataclass
class RatingSummary:
    """The ratings of one model, summed up.

    Attributes:
        count: How many replies were rated.
        means: The mean score of each field (``helpfulness``, ``accuracy``, ``clarity``);
            empty when nothing was rated.
    """

    count: int = 0
    means: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        """One line for a status bar, e.g. ``3 rated · helpfulness 4.0 · accuracy 3.7 · clarity 4.3``."""
        if not self.count:
            return "no ratings yet"
        scores = " · ".join(f"{name} {self.means[name]:.1f}" for name in RATING_FIELDS)
        return f"{self.count} rated · {scores}"


def ratings_path(ref: str, home: Path) -> Path:
    """Where the ratings of model ``ref`` live: its run folder, else ``<home>/ratings/<slug>.jsonl``."""
    run_dir = find_run_dir(ref, home)
    if run_dir is not None:
        return run_dir / RATINGS_FILE
    return Path(home) / "ratings" / f"{reference_slug(ref)}.jsonl"


def _as_file(target: Path) -> Path:
    """A run folder means its ``ratings.jsonl``; a file path is used as given."""
    target = Path(target)
    return target / RATINGS_FILE if target.is_dir() else target


def check_scores(record: dict) -> None:
    """Raise ``ValueError`` unless every rating field is an integer from 1 to 5."""
    for name in RATING_FIELDS:
        score = record.get(name)
        if isinstance(score, bool) or not isinstance(score, int) or not MIN_SCORE <= score <= MAX_SCORE:
            raise ValueError(f"{name} must be an integer from {MIN_SCORE} to {MAX_SCORE}, got {score!r}")


def append_rating(target: Path, record: dict) -> dict:
    """Append one rating to a ratings file, flushed at once.

    Args:
        target: A run folder (its ``ratings.jsonl``) or a ``.jsonl`` file path (see
            :func:`ratings_path`); missing folders are created.
        record: ``prompt``, ``reply``, ``model``, ``use_adapter``, ``settings`` and the three
            scores; ``time`` (epoch seconds) is added when absent.

    Returns:
        The record as written.

    Raises:
        ValueError: A score is missing or outside 1–5.
        UnsafeFileError: The ratings file is a symbolic link (never written through) or not a
            regular file (an ``OSError``).
    """
    check_scores(record)
    record = {"time": time.time(), **record}
    path = _as_file(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_append(path) as handle:
        # A writer that died mid-line left a fragment: start on a fresh line so this record stays whole.
        torn = handle.tell() > 0 and read_tail(path, 1) != b"\n"
        handle.write((b"\n" if torn else b"") + orjson.dumps(record) + b"\n")
        handle.flush()
    return record


def read_ratings(target: Path) -> list[dict]:
    """Every complete rating in a ratings file (a run folder or a file); none when it is missing.

    Lines that are not whole JSON objects with valid scores (a torn last line) are skipped. Only
    a regular file is read, and of a file over ``MAX_RATINGS_BYTES`` only its last ratings.
    """
    path = _as_file(target)
    data = read_tail(path, MAX_RATINGS_BYTES)
    lines = data.splitlines()
    if len(data) >= MAX_RATINGS_BYTES:
        lines = lines[1:]  # cut by the start of the read
    records = []
    for line in lines:
        try:
            record = orjson.loads(line)
            check_scores(record)
        except (orjson.JSONDecodeError, ValueError, AttributeError):
            continue
        records.append(record)
    return records


def summarize_ratings(records: list[dict]) -> RatingSummary:
    """The count and the mean of each score over ``records`` (from :func:`read_ratings`)."""
    if not records:
        return RatingSummary()
    means = {name: sum(r[name] for r in records) / len(records) for name in RATING_FIELDS}
    return RatingSummary(len(records), means)


def preference_pairs(records: list[dict]) -> list[dict]:
    """Preference pairs (``prompt``, ``chosen``, ``rejected``) from ratings of different replies to one prompt.

    A reply's score is the sum of its three ratings (their mean when it was rated more than once);
    every two replies to the same prompt (and system prompt) with different scores make a pair,
    the higher one chosen. The pairs train a reward model or DPO: the chapter's human-preference loop.
    """
    by_prompt: dict[tuple[str, str], dict[str, list[int]]] = {}
    for record in records:
        prompt, reply = record.get("prompt"), record.get("reply")
        if not isinstance(prompt, str) or not isinstance(reply, str) or not prompt.strip() or not reply.strip():
            continue
        key = (str(record.get("system_prompt") or ""), prompt)
        by_prompt.setdefault(key, {}).setdefault(reply, []).append(sum(record[name] for name in RATING_FIELDS))
    pairs = []
    for (_system, prompt), replies in by_prompt.items():
        ranked = sorted(((sum(totals) / len(totals), reply) for reply, totals in replies.items()),
                        key=lambda scored: -scored[0])
        for index, (better_score, better) in enumerate(ranked):
            pairs += [{"prompt": prompt, "chosen": better, "rejected": worse}
                      for worse_score, worse in ranked[index + 1:] if better_score > worse_score]
    return pairs
