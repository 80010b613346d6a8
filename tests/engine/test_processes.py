"""Which processes count as ours: the entry modules' current names, and the names they had before."""

import subprocess
import sys
import time

import pytest

from tui_ft.engine.processes import EVAL_MODULES, RUN_MODULES, owned_process, start_time


def _runs(pid: int, args: tuple[str, ...]) -> bool:
    import psutil

    try:
        return start_time(pid) is not None and psutil.Process(pid).cmdline()[-len(args):] == list(args)
    except psutil.Error:
        return False


@pytest.fixture
def spawn():
    """Start ``python -c 'sleep' ARG...`` (a command line that names ARG...); killed at the end."""
    started = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *args])
        started.append(process)
        # Until the child has exec'd: between fork and exec its command line is still pytest's
        # (a busy machine showed it: the test found "not ours").
        deadline = time.monotonic() + 60
        while not _runs(process.pid, args) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _runs(process.pid, args), f"pid {process.pid} never showed {args} in its command line"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.mark.parametrize("module", [
    "tui_ft.engine.runs.worker", "tui_ft.engine.runs.group_launcher",
    "tui_ft.engine.worker", "tui_ft.engine.group_launcher",  # runs started before the engine had packages
])
def test_a_run_started_under_any_entry_name_is_ours_to_stop(tmp_path, spawn, module):
    process = spawn(module, str(tmp_path))
    found = owned_process(process.pid, start_time(process.pid), tmp_path, RUN_MODULES)
    assert found is not None and found.pid == process.pid


@pytest.mark.parametrize("module", ["tui_ft.engine.evaluation.worker", "tui_ft.engine.eval_worker"])
def test_an_evaluation_job_under_any_entry_name_is_ours_to_stop(tmp_path, spawn, module):
    process = spawn(module, str(tmp_path))
    assert owned_process(process.pid, start_time(process.pid), tmp_path, EVAL_MODULES) is not None
    assert owned_process(process.pid, start_time(process.pid), tmp_path, RUN_MODULES) is None  # not a run's worker


def test_another_module_for_the_same_folder_is_not_ours(tmp_path, spawn):
    process = spawn("tui_ft.engine.runs.lifecycle", str(tmp_path))
    assert owned_process(process.pid, start_time(process.pid), tmp_path, RUN_MODULES) is None
