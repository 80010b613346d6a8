"""Process entry for one run: ``python -m tui_ft.engine.worker RUN_DIR``.

Started by :func:`tui_ft.engine.runs.launch_run` in its own session with output to
``worker.log``. SIGTERM and SIGINT ask for a stop (checkpoint at the next step boundary, then
``stopped``); SIGHUP is ignored, so an SSH hangup never ends training. Every ending is
written to ``status.json``: ``finished``, ``stopped`` or ``failed`` with the reason.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

from tui_ft.engine.run_files import METRICS_FILE, MetricsWriter, read_json, update_status, STATUS_FILE


class StopFlag:
    """Set by a signal handler; polled by the trainer at step boundaries."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def handle(self, signum, _frame) -> None:
        self.requested = True
        print(f"received {signal.Signals(signum).name}: stopping at the next step boundary", flush=True)


def _process_start_time() -> float | None:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - the start time only guards against pid reuse
        return None


def mark_running(run_dir: Path) -> None:
    """Claim the run: our pid, its start time (against pid reuse) and the first start time."""
    started = read_json(run_dir / STATUS_FILE).get("started") or time.time()
    update_status(run_dir, state="running", pid=os.getpid(), pid_started=_process_start_time(), started=started,
                  message="starting")


def fail(run_dir: Path, message: str) -> None:
    """Mark the run ``failed`` with ``message`` and log it as an event."""
    print(f"failed: {message}", flush=True)
    status = update_status(run_dir, state="failed", message=message)
    writer = MetricsWriter(run_dir / METRICS_FILE)
    writer.log("event", status.get("step", 0), status.get("epoch", 0.0), event="failed", message=message)
    writer.close()


def run_worker(run_dir: Path, stop: StopFlag | None = None) -> int:
    """Train the run; returns the exit status (0 finished or stopped, 1 failed)."""
    from tui_ft.engine.train import TrainingFailed, train_run

    run_dir = Path(run_dir).resolve()
    mark_running(run_dir)
    try:
        state = train_run(run_dir, stop or StopFlag())
    except TrainingFailed as error:
        fail(run_dir, str(error))
        return 1
    except Exception as error:  # noqa: BLE001 - any crash must end as a readable `failed`
        traceback.print_exc()
        fail(run_dir, f"{type(error).__name__}: {error} (details in worker.log)")
        return 1
    print(f"{state} at {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not (Path(argv[0]) / "run.json").is_file():
        print("usage: python -m tui_ft.engine.worker RUN_DIR (a folder with run.json)", file=sys.stderr)
        return 2
    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop.handle)
    signal.signal(signal.SIGINT, stop.handle)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    print(f"worker pid {os.getpid()} for {argv[0]} at {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    return run_worker(Path(argv[0]), stop)


if __name__ == "__main__":
    sys.exit(main())
