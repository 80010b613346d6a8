"""The files of a run folder: ``status.json`` (atomic), ``metrics.jsonl`` (append, tailed), checkpoints.

Kept apart from process control (:mod:`tui_ft.engine.runs.lifecycle`) so the worker, the CLI
and the dashboard share one reader and one writer of each file. Every file is opened through
:mod:`tui_ft.engine.files`: never through a planted link, regular files only, bounded reads.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import orjson

from tui_ft.engine.files import open_append, open_regular, read_json, read_tail, write_json_atomic
from tui_ft.engine.workspace import RUN_FILE

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "worker.log"
MAX_METRICS_READ_BYTES = 64 << 20  # one MetricsTail read; a longer history is read over several polls
CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")  # ckpt/step-N


def read_run_config(run_dir: Path) -> dict:
    """The run's ``run.json`` as a dict (``{}`` when missing)."""
    return read_json(Path(run_dir) / RUN_FILE)


def update_status(run_dir: Path, **changes) -> dict:
    """Merge ``changes`` into ``status.json`` (atomically) and stamp ``updated``; returns the new status."""
    path = Path(run_dir) / STATUS_FILE
    status = read_json(path)
    status.update(changes)
    status["updated"] = time.time()
    write_json_atomic(path, status)
    return status


class MetricsWriter:
    """Append one JSON object a line to ``metrics.jsonl``, flushed per line.

    A previous writer that died mid-line left a torn line: a newline is written first so that
    the fragment stays a line of its own (readers skip it) and the next record is whole.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = open_append(self.path)  # held open for the run's lifetime; never through a link
        if self._file.tell() > 0 and read_tail(self.path, 1) != b"\n":
            self._file.write(b"\n")

    def log(self, kind: str, step: int, epoch: float, **values) -> dict:
        """Append a record ``{kind, step, epoch, time, **values}`` and flush it."""
        record = {"kind": kind, "step": step, "epoch": round(epoch, 4), "time": time.time(), **values}
        self._file.write(orjson.dumps(record) + b"\n")
        self._file.flush()
        return record

    def close(self) -> None:
        self._file.close()


def merge_records(history: list[dict], new: list[dict]) -> list[dict]:
    """Add ``new`` records to ``history``, honouring ``resumed`` events.

    A run resumed from the checkpoint at step N may have logged steps after N before it died;
    the resumed worker logs them again, so on a ``{"kind": "event", "event": "resumed",
    "step": N}`` record the train and eval records after step N are dropped. The dashboard
    feeds :meth:`MetricsTail.read_new` output through this to keep one clean history.

    A worker that died before its first checkpoint is started again from step 0 and logs
    ``started`` again: the same rule, at step 0, drops the dead worker's steps.
    """
    for record in new:
        if record.get("kind") == "event" and record.get("event") in ("resumed", "started"):
            step = record.get("step", 0)
            history = [r for r in history if r.get("kind") == "event" or r.get("step", 0) <= step]
        history.append(record)
    return history


class MetricsTail:
    """Read a growing ``metrics.jsonl`` incrementally.

    Each :meth:`read_new` reads from the byte offset where the last one stopped, at most
    ``limit`` bytes a call (a longer history comes over several calls). A last line without its
    newline is being written: it is left for the next call. A file that shrank (replaced) is
    read again from the start. Anything but a regular file (a FIFO, ``/dev/zero``) reads as empty.
    """

    def __init__(self, path: Path, limit: int = MAX_METRICS_READ_BYTES):
        self.path = Path(path)
        self.offset = 0
        self.limit = limit

    def read_new(self) -> list[dict]:
        """The complete records appended since the last call (malformed lines skipped)."""
        try:
            with open_regular(self.path) as file:
                size = os.fstat(file.fileno()).st_size
                if size < self.offset:
                    self.offset = 0
                file.seek(self.offset)
                chunk = file.read(min(size - self.offset, self.limit))
        except OSError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            if len(chunk) >= self.limit:
                self.offset += len(chunk)  # one line longer than the limit: not a record, skip it
            return []
        self.offset += end + 1
        records = []
        for line in chunk[:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a fragment left by a writer that died mid-line
            if isinstance(record, dict):
                records.append(record)
        return records


def read_metrics(path: Path) -> list[dict]:
    """Every complete record of a ``metrics.jsonl`` file, with resumed steps de-duplicated.

    Args:
        path: The ``metrics.jsonl`` file, or a run folder.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    tail, records = MetricsTail(path), []
    while True:  # bounded reads, until the end of the file
        offset = tail.offset
        records += tail.read_new()
        if tail.offset <= offset:
            return merge_records([], records)


def metrics_path(run_dir: Path) -> Path:
    """The run's ``metrics.jsonl``."""
    return Path(run_dir) / METRICS_FILE


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints (``ckpt/step-N``), oldest first."""
    folder = Path(run_dir) / "ckpt"
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and path.is_dir() and not path.is_symlink():  # a link is not a checkpoint of this run
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]
