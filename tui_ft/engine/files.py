"""Reading and writing the files tui-ft keeps, safely: never through a planted link, never unbounded.

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
from pathlib import Path

import orjson

MAX_STATE_BYTES = 4 << 20  # run.json, status.json, job.json: a few KB when written by tui-ft
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


def open_log(path: Path) -> int:
    """A worker's log opened for appending (created when missing), for a child's stdout and stderr.

    Returns:
        A file descriptor the caller closes (the child keeps its own copy).

    Raises:
        UnsafeFileError: ``path`` is a symbolic link or not a regular file: a planted link would
            have the worker's output (dataset lines included) written into its target.
    """
    return open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)


def refuse_link(path: Path) -> None:
    """Raise :class:`UnsafeFileError` when ``path`` is a symbolic link (checked before a state change; the open is the guard)."""
    if os.path.islink(path):
        raise UnsafeFileError(f"{path} is a symbolic link: tui-ft does not write through links")


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


def write_json_atomic(path: Path, data, *, parents: bool = False) -> None:
    """Write JSON to ``path`` atomically (:func:`write_bytes_atomic`): readers never see half a file.

    Args:
        path: The file.
        data: Any JSON value (numpy numbers included).
        parents: Create missing folders above ``path`` first (the result store). Off for a run's
            files: a run folder deleted while its worker runs is not made again by a status write.
    """
    if parents:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
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


def current_umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS): the only way to read it is to set it
    os.umask(mask)
    return mask


def files_as_umask(folder: Path) -> None:
    """Give the regular files directly in ``folder`` the mode a file created now gets (0644 under umask 022).

    safetensors writes every ``.safetensors`` file 0600 (a temporary file renamed), whatever the
    umask: an exported model or a run's adapter beside 0644 configs, which a teammate on a shared
    server can read all of but the weights. Links are left alone.
    """
    mode = 0o666 & ~current_umask()
    for path in Path(folder).iterdir():
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) != mode:
            os.chmod(path, mode)


def remove_tree(path: Path) -> None:
    """Delete a folder tui-ft made (errors ignored); a link in its place is removed itself, never followed."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def open_regular(path: Path):
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
    with open_regular(path) as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFileError(f"{path} is larger than {limit} bytes")
    return data


def read_tail(path: Path, count: int) -> bytes:
    """The last ``count`` bytes (at most) of a regular file; ``b""`` when missing or not a regular file."""
    try:
        with open_regular(path) as file:
            size = os.fstat(file.fileno()).st_size
            file.seek(max(0, size - count))
            return file.read(count)
    except OSError:
        return b""


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
