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
- **Logs never through a link**: a worker's log is opened with :func:`tui_ft.engine.files.open_log`.
"""

from __future__ import annotations

import contextlib
import os
import signal
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
STOP_FILE = "STOP"  # a worker (training or evaluation) stops at its next boundary when this file appears
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


def start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or ``None`` when it cannot be told."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - the start time only guards against pid reuse
        return None


PID_MAX = 4_194_304  # Linux's largest pid (PID_MAX_LIMIT); others are lower


def parse_pid(value) -> int | None:
    """A pid read from a status file, or ``None`` unless it is a whole number from 1 to :data:`PID_MAX`.

    ``-1`` and ``0`` are not processes to ``os.kill`` (they mean every process, or the group),
    and ``"x"`` is not a pid at all: a damaged or hand-written status file names no process.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= PID_MAX:
        return None
    return value


def process_alive(pid, started=None) -> bool:
    """True when ``pid`` runs and is not a zombie (and, when ``started`` is known, started then).

    A malformed pid (``-1``, ``"x"``, ``true``) from a damaged or hand-written status reads as dead.
    """
    if parse_pid(pid) is None:
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
    if parse_pid(pid) is None or isinstance(started, bool) or not isinstance(started, (int, float)):
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


def ask_to_stop(folder: Path, status: dict, modules: tuple[str, ...]) -> bool:
    """Ask the process working in ``folder`` to stop: a ``STOP`` file there, and SIGTERM to it if it is ours.

    The signal goes only to the process :func:`owned_process` accepts for ``status``: a status
    file naming any other process, by pid reuse or on purpose, gets nothing signalled (the
    ``STOP`` file alone asks then).

    Returns:
        True when a live process of ours was sent SIGTERM.
    """
    from tui_ft.engine.files import touch_flag

    try:
        touch_flag(Path(folder) / STOP_FILE)  # never through a link planted as STOP
    except OSError:
        pass  # SIGTERM alone asks the worker to stop too
    process = owned_process(status.get("pid"), status.get("pid_started"), Path(folder), modules)
    if process is None:
        return False
    import psutil

    try:
        process.send_signal(signal.SIGTERM)  # psutil checks again that the pid was not reused
    except psutil.Error:
        return False
    return True
