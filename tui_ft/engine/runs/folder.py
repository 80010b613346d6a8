"""The files of a run folder: ``status.json`` (atomic) and ``metrics.jsonl`` (append, tailed).

Kept apart from process control (:mod:`tui_ft.engine.runs.lifecycle`) so the worker, the CLI and the
dashboard share one reader and one writer of each file.

Run folders, workspaces and result files may come from someone else (a shared server, a
downloaded run), so every file the engine keeps is opened through the helpers here:

- writes never follow a symbolic link: temporary files are created exclusively under a fresh
  name (``O_CREAT | O_EXCL | O_NOFOLLOW``), files appended to are opened with ``O_NOFOLLOW``,
  and a link where a folder is written or pruned is refused (:func:`real_folder`), so no file
  or folder outside the workspace is ever written or deleted through a planted link;
- reads take regular files only (a FIFO would block, ``/dev/zero`` never ends) and at most a
  set number of bytes per kind of file (:func:`read_regular`, :func:`read_tail`);
- a file that is skipped for being malformed is named once on stderr (:func:`warn_skipped`).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import sys
import threading
import time
from pathlib import Path

import orjson

RUN_FILE = "run.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "worker.log"
STOP_FILE = "STOP"
FINAL_STATES = ("stopped", "finished", "failed", "died")
LIVE_STATES = ("queued", "running", "stopping")
MAX_STATE_BYTES = 4 << 20  # run.json, status.json, job.json: a few KB when written by tui-ft
MAX_METRICS_READ_BYTES = 64 << 20  # one MetricsTail read; a longer history is read over several polls
MAX_RATINGS_BYTES = 64 << 20  # ratings.jsonl: a line is a prompt and a reply; 64 MiB is thousands of ratings
_NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFileError(OSError):
    """A file or folder tui-ft refuses: a symbolic link where it writes, not a regular file, or too large.

    An ``OSError``, so every reader that treats an unreadable file as absent does so here too;
    the message is one line naming the path.
    """


def _refusal(path: Path, error: OSError) -> OSError:
    """``error`` from a no-follow open, as one clear line when the path was a link."""
    if error.errno == errno.ELOOP:
        return UnsafeFileError(f"{path} is a symbolic link: tui-ft does not write through links")
    return error


def open_no_follow(path: Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` that never follows a link at ``path`` (its folders are taken as they are).

    A FIFO or device is never waited on: it is opened non-blocking and refused unless it is a
    regular file. Returns a blocking file descriptor.
    """
    path = Path(path)
    try:
        fd = os.open(path, flags | _NO_FOLLOW | os.O_NONBLOCK, mode)
    except OSError as error:
        if error.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
            raise UnsafeFileError(f"{path} is not a regular file") from None
        raise _refusal(path, error) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFileError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: Path):
    """A file opened for appending (created when missing); a link or a non-regular file is refused."""
    return os.fdopen(open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab")


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a new temporary file and ``os.replace``.

    The temporary file is created exclusively under a fresh random name, so nothing planted in
    the folder (a link named like it) is ever written through; ``os.replace`` puts the file in
    place of whatever ``path`` was (a link is replaced, never followed). Readers see the old
    file or the new one, never half.
    """
    path = Path(path)
    for _ in range(8):
        temp = _temporary_name(path)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise UnsafeFileError(f"{path}: cannot create a temporary file beside it")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to ``path`` atomically (:func:`write_bytes_atomic`): readers never see half a file."""
    write_bytes_atomic(path, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def touch_flag(path: Path) -> None:
    """Create an empty flag file (``STOP``) without following a link.

    The flag's content does not matter, so a link (or FIFO) planted in its place is removed,
    the entry itself and never its target, and the flag is created anew, exclusively.
    """
    path = Path(path)
    try:
        os.close(open_no_follow(path, os.O_WRONLY | os.O_CREAT))
        return
    except UnsafeFileError:
        pass
    path.unlink()  # the link (or FIFO) itself
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o666))


def real_folder(path: Path, create: bool = True) -> Path:
    """``path`` as a real folder (created when missing and ``create``); a link or a file there is refused.

    For folders tui-ft writes into and deletes from (``ckpt/``): through a link, pruning old
    checkpoints would delete the link target's folders.
    """
    path = Path(path)
    if create:
        try:
            path.mkdir()
        except FileExistsError:
            pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeFileError(f"{path} is a symbolic link: tui-ft does not write or delete through links")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFileError(f"{path} is not a folder")
    return path


def remove_tree(path: Path) -> None:
    """Delete a folder tui-ft made (errors ignored); a link in its place is removed itself, never followed."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _open_regular(path: Path):
    """``path`` opened for reading when it is a regular file (a link to one is read); else ``UnsafeFileError``."""
    path = Path(path)
    if not stat.S_ISREG(os.stat(path).st_mode):  # before opening: opening a device can have effects
        raise UnsafeFileError(f"{path} is not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced in between
            raise UnsafeFileError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_regular(path: Path, limit: int = MAX_STATE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Raises:
        FileNotFoundError: No such file.
        UnsafeFileError: A FIFO, a device, a folder, or more than ``limit`` bytes.
    """
    with _open_regular(path) as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFileError(f"{path} is larger than {limit} bytes")
    return data


def read_tail(path: Path, count: int) -> bytes:
    """The last ``count`` bytes (at most) of a regular file; ``b""`` when missing or not a regular file."""
    try:
        with _open_regular(path) as file:
            size = os.fstat(file.fileno()).st_size
            file.seek(max(0, size - count))
            return file.read(count)
    except OSError:
        return b""


PID_MAX = 4_194_304  # Linux's largest pid (PID_MAX_LIMIT); others are lower


def parse_pid(value) -> int | None:
    """A pid read from a status file, or ``None`` unless it is a whole number from 1 to :data:`PID_MAX`.

    ``-1`` and ``0`` are not processes to ``os.kill`` (they mean every process, or the group),
    and ``"x"`` is not a pid at all: a damaged or hand-written status file names no process.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= PID_MAX:
        return None
    return value


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_skipped(path: Path, why: str) -> None:
    """Say once per process, on stderr, that a malformed file was skipped: ``tui-ft: PATH: skipped (WHY)``.

    Lists (runs, models, results) go on without it. In the dashboard stderr is the app's own
    capture, so the line never reaches the screen; the CLI prints it once.
    """
    key = (str(path), why)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    line = f"tui-ft: {path}: skipped ({why})"
    print("".join(c if c.isprintable() else "?" for c in line), file=sys.stderr)


def read_json(path: Path, limit: int = MAX_STATE_BYTES) -> dict:
    """Read a JSON object; an absent, unreadable, oversized or non-regular file reads as ``{}``."""
    try:
        data = orjson.loads(read_regular(path, limit))
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


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
            with _open_regular(self.path) as file:
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
