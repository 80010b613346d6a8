"""Helpers for the fault-injection tests: tiny runs, forked workers, waiting, checkpoint checks.

Starting a real worker costs an import of torch, transformers and peft (6 s of CPU here, far
more on a shared machine), so the kill -9 trials fork the worker from the test process, where
those modules are loaded already. The child does what :func:`tui_ft.engine.runs.launch_run`
arranges (a new session, stdin from /dev/null, output appended to ``worker.log``) and then
runs the real entry point, ``tui_ft.engine.runs.worker.main``. The tests that are about process
launching itself (SIGHUP, the CLI without network) start real ``launch_run`` workers.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path

import pytest

from tui_ft.engine.files import read_json
from tui_ft.engine.runs import create_run, read_metrics
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.folder import STATUS_FILE, MetricsTail, update_status

import polling

DATASET = "datasets/seed_instructions.jsonl"  # 8 short examples


def new_run(home: Path, model: Path, **values) -> Path:
    """Create a tiny run: one torch thread, no evaluation split, a checkpoint every step."""
    values = {"model": str(model), "dataset": DATASET, "eval_split": 0.0, "save_every": 1, "seed": 11,
              "threads": 1, "batch_size": 2} | values
    return create_run(TrainConfig(**values), home)


def train_losses(run_dir: Path) -> list[float]:
    """The run's train losses in step order (steps redone after a resume counted once)."""
    return [r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"]


def train_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]


def wait_for(predicate, what: str, timeout: float = 120.0, interval: float = 0.01):
    """:func:`polling.wait_for`, polling often: these tests catch a run between two steps."""
    return polling.wait_for(predicate, what, timeout, interval)


class Progress:
    """A worker's progress read from ``metrics.jsonl`` as it grows.

    Attributes:
        starts: How many workers began training (``started`` or ``resumed`` events).
        start_step: The step the latest of them began at.
        step: The latest train step logged.
    """

    def __init__(self, run_dir: Path):
        self.tail = MetricsTail(Path(run_dir) / "metrics.jsonl")
        self.starts, self.start_step, self.step = 0, 0, 0

    def update(self) -> Progress:
        for record in self.tail.read_new():
            if record.get("event") in ("started", "resumed"):
                self.starts += 1
                self.start_step = self.step = record["step"]
            elif record["kind"] == "train":
                self.step = record["step"]
        return self


class ForkedWorkers:
    """Fork workers like ``launch_run`` starts them; every child is killed and reaped at teardown."""

    def __init__(self):
        self.pids: set[int] = set()

    def launch(self, run_dir: Path) -> int:
        """Start the worker for ``run_dir`` in a forked child; returns its pid (a drop-in ``launch_run``)."""
        run_dir = Path(run_dir).resolve()
        sys.stdout.flush()
        sys.stderr.flush()
        held, release = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 70
            try:
                os.close(release)
                os.read(held, 1)  # wait until the parent has recorded our pid, as launch_run does
                code = _child_main(run_dir)
            except BaseException:  # noqa: BLE001 - whatever happens, the child must exit here
                traceback.print_exc()
            finally:
                os._exit(code)
        self.pids.add(pid)
        os.close(held)
        status = read_json(run_dir / STATUS_FILE)
        if status.get("state") == "queued" and not status.get("pid"):
            update_status(run_dir, pid=pid, message="starting the worker")  # what launch_run writes
        os.write(release, b"x")
        os.close(release)
        return pid

    def kill(self, pid: int) -> None:
        """SIGKILL ``pid`` and reap it."""
        os.kill(pid, signal.SIGKILL)
        self.reap(pid)

    def reap(self, pid: int) -> int:
        """Wait for ``pid`` to end; returns its exit status (negative: the signal that ended it)."""
        _, status = os.waitpid(pid, 0)
        self.pids.discard(pid)
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        for pid in list(self.pids):
            try:
                self.kill(pid)
            except (ProcessLookupError, ChildProcessError):
                self.pids.discard(pid)


def _child_main(run_dir: Path) -> int:
    import torch

    # The parent's OpenMP pool does not survive fork(): a child using more than one thread
    # hangs in its first parallel region (seen here). The runs ask for one thread anyway.
    torch.set_num_threads(1)
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(run_dir / "worker.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    # pytest replaced sys.stdout/err with capture objects: point Python's streams at the log too.
    sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        os.environ.pop(name, None)  # a single worker, never a torchrun rank
    os.chdir(run_dir)
    from tui_ft.engine.runs import worker

    return worker.main([str(run_dir)])


@pytest.fixture
def forked():
    """A :class:`ForkedWorkers`; children still alive at the end are killed and reaped."""
    workers = ForkedWorkers()
    yield workers
    workers.close()


@pytest.fixture
def one_thread():
    """Keep this process's torch thread count as it was (tiny runs set it to 1 in-process)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def checkpoint_contents(folder: Path) -> dict:
    """Load every file of ``ckpt/step-N`` the way resume does; returns the trainable weights.

    Weights from safetensors, optimizer, scheduler and random generators with
    ``torch.load(weights_only=True)``, the data position from ``state.json``.
    """
    import orjson
    import torch
    from safetensors.torch import load_file

    weights = load_file(folder / "trainable.safetensors")
    optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
    scheduler = torch.load(folder / "scheduler.pt", weights_only=True)
    rng = torch.load(folder / "rng.pt", weights_only=True)
    position = orjson.loads((folder / "state.json").read_bytes())
    assert position["step"] == int(folder.name.split("-")[1]), (folder, position)
    assert len(optimizer["state"]) == len(weights) and scheduler["last_epoch"] == position["step"]
    assert {"python", "torch"} <= set(rng)
    return weights
