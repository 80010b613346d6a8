"""The processes tui-ft starts, and how it knows later that a pid is still one of them.

Run folders and workspaces may belong to someone else (a colleague's folder, a downloaded run),
so nothing in them may decide what code runs or which process gets a signal:

- **No imports from the current folder.** ``python -m MODULE`` and ``python -c`` put the
  current folder first on ``sys.path``: an ``orjson.py``, ``torch.py`` or ``tui_ft/`` planted in
  a run folder (a worker's current folder) or a workspace would be imported instead of the real
  one. :func:`python_command` starts modules through a bootstrap that drops the current folder
  from ``sys.path`` before importing anything (``-P`` would do it, but only from Python 3.11),
  and :func:`child_env` sets ``PYTHONSAFEPATH`` for the Pythons those processes start in turn
  (3.11+) and makes relative ``PYTHONPATH`` entries absolute.
- **Signals only to our own processes.** A ``status.json`` names a pid; :func:`owned_process`
  accepts it only when that process runs one of tui-ft's entry modules for this very folder
  (its command line says so) and started when the status says it did.
- **Logs never through a link** (:func:`open_log`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path

# Runs as ``python -c BOOTSTRAP MODULE ARG...``. For -c, Python puts '' (the current folder) first
# on sys.path once site (and any sitecustomize) is imported; removing it here comes before any
# import that could be shadowed. An absolute entry naming the same folder (PYTHONPATH, an
# editable install's .pth) is the user's own setup and stays. runpy then runs MODULE as -m would.
BOOTSTRAP = (
    "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
    "import runpy; del sys.argv[0]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)

WORKER_MODULE = "tui_ft.engine.runs.worker"
GROUP_MODULE = "tui_ft.engine.runs.group_launcher"
EVAL_MODULE = "tui_ft.engine.evaluation.worker"
# The names these entry points had before the engine was grouped into packages: a run or job
# started by an older tui-ft still runs under them (and torchrun command lines name the first),
# so they stay ours to stop.
FORMER_RUN_MODULES = ("tui_ft.engine.worker", "tui_ft.engine.group_launcher")
FORMER_EVAL_MODULES = ("tui_ft.engine.eval_worker",)
RUN_MODULES = (WORKER_MODULE, GROUP_MODULE, *FORMER_RUN_MODULES)  # what a run's recorded pid may be running
EVAL_MODULES = (EVAL_MODULE, *FORMER_EVAL_MODULES)  # what an evaluation job's recorded pid may be running
TRUST_FLAG = "--trust-remote-code"  # the worker's argument: this launch trusts the model's own code
START_TOLERANCE_S = 2.0  # psutil's start times of one process agree to well under this


def python_command(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARG...`` without the current folder on ``sys.path``."""
    return [sys.executable, "-c", BOOTSTRAP, module, *map(str, args)]


def package_root() -> str:
    """The folder that holds the ``tui_ft`` package (a checkout or site-packages)."""
    return str(Path(__file__).resolve().parents[2])


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child Python: ``tui_ft`` importable, no folder-relative paths.

    ``PYTHONPATH`` starts with the package's own folder; its relative or empty entries (which
    would mean the child's current folder, a run folder or workspace) are made absolute
    against this process's current folder, where they meant something to the user.
    ``PYTHONSAFEPATH`` keeps the current folder off ``sys.path`` in the Pythons the child
    starts (ignored before 3.11).
    """
    env = dict(os.environ)
    here = os.getcwd()
    entries = [package_root()] + [os.path.join(here, p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(entries))
    env["PYTHONSAFEPATH"] = "1"
    env.update(extra)
    return env


@contextlib.contextmanager
def safe_path_env():
    """``PYTHONSAFEPATH=1`` in this process's environment for the duration (Python 3.11+ honours it).

    For children whose command we do not write: multiprocessing starts ``python -c ...``, which
    imports from the current folder (often the workspace) before anything else. Set only while
    such children start, since a script run later with it would lose its own folder on ``sys.path``.
    """
    before = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = before


class UnsafeLogError(OSError):
    """A log file tui-ft will not append to (a symbolic link, or not a regular file); one line for the user."""


def _link_refusal(path: Path) -> UnsafeLogError:
    return UnsafeLogError(f"{path} is a symbolic link: tui-ft does not write its log through a link")


def refuse_log_link(path: Path) -> None:
    """Raise :class:`UnsafeLogError` when ``path`` is a symbolic link (checked before a state change; :func:`open_log` is the guard)."""
    if os.path.islink(path):
        raise _link_refusal(path)


def open_log(path: Path) -> int:
    """Open ``path`` for appending (created when missing), never through a symbolic link.

    Returns:
        A file descriptor the caller closes (the child keeps its own copy).

    Raises:
        UnsafeLogError: ``path`` is a symbolic link or not a regular file: a planted link would
            have the worker's output (dataset lines included) written into its target.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _link_refusal(path) from None
        if error.errno == errno.ENXIO:  # a FIFO with no reader
            raise UnsafeLogError(f"{path} is not a regular file") from None
        raise
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeLogError(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or ``None`` when it cannot be told."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - the start time only guards against pid reuse
        return None


def _is_pid(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def process_alive(pid, started=None) -> bool:
    """True when ``pid`` runs and is not a zombie (and, when ``started`` is known, started then).

    A malformed pid (``-1``, ``"x"``, ``true``) from a damaged or hand-written status reads as dead.
    """
    if not _is_pid(pid):
        return False
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        # A recycled pid belongs to a process that started later than ours.
        return started is None or abs(process.create_time() - started) < START_TOLERANCE_S
    except (psutil.Error, OSError, TypeError):  # TypeError: a start time that is not a number
        return False


def owned_process(pid, started, folder: Path, modules: tuple[str, ...]):
    """The live process ``pid`` when it is one of ours for ``folder``; ``None`` otherwise.

    Ours means: its command line runs one of ``modules`` (tui-ft's entry points) with an
    argument that is ``folder`` (relative arguments taken from the process's own current
    folder, as torchrun across servers may be given them), and it started at ``started`` (the
    time the status recorded; a status without one is not trusted). A status file is data
    anyone could have written: without these checks ``runs stop`` would signal whatever pid
    it names.
    """
    if not _is_pid(pid) or isinstance(started, bool) or not isinstance(started, (int, float)):
        return None
    import psutil

    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            if abs(process.create_time() - started) >= START_TOLERANCE_S:
                return None
            cmdline = process.cmdline()
            cwd = process.cwd()
    except (psutil.Error, OSError):
        return None
    if not any(arg in modules for arg in cmdline):
        return None
    target = os.path.realpath(folder)
    for arg in cmdline:
        if arg and not arg.startswith("-") and len(arg) < 4096 and os.path.realpath(os.path.join(cwd, arg)) == target:
            return process
    return None
