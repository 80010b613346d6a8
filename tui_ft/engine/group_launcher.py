"""Process entry for a run of several processes: ``python -m tui_ft.engine.group_launcher RUN_DIR``.

This process *is* torchrun: it calls ``torch.distributed.run`` in-process with
``--standalone --nproc-per-node N -m tui_ft.engine.worker RUN_DIR`` (what the shell command
``torchrun --standalone --nproc-per-node N -m tui_ft.engine.worker RUN_DIR`` does), so every
rank is its child and its pid is the run's pid: a run whose torchrun is gone reads ``died``.
It adds what a shell ``torchrun`` cannot: when a rank fails, torchrun's account of the
failure (which rank, which exit code or signal) goes into ``status.json``.

:func:`tui_ft.engine.runs.launch_run` starts it detached, in its own session, with output to
``worker.log``; SIGTERM reaches every rank through torchrun (each stops at the next step with
a checkpoint); SIGHUP is ignored.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from tui_ft.engine.run_files import STATUS_FILE, read_json, read_run_config

PEER_LOST_EXIT = 3  # tui_ft.engine.worker's exit status for "another rank went away" (not imported: no torch here)
SYMPTOM_SIGNALS = ("SIGTERM", "SIGABRT")  # torchrun's own shutdown signal; gloo aborts when a peer vanishes


def torchrun_args(run_dir: Path, nproc: int) -> list[str]:
    """torchrun's arguments for ``nproc`` processes on this machine."""
    # SIGHUP is left out: an SSH hangup must not end training (the workers ignore it too).
    return ["--standalone", "--nproc-per-node", str(nproc), "--signals-to-handle", "SIGTERM,SIGINT,SIGQUIT",
            "-m", "tui_ft.engine.worker", str(run_dir)]


def failure_message(failures: dict, status: dict) -> str | None:
    """What ``status.json`` should say after torchrun reports failed ranks; ``None``: keep rank 0's message.

    Args:
        failures: torchrun's ``ChildFailedError.failures``: rank -> failure with ``exitcode``,
            ``timestamp`` and ``signal_name()``.
        status: The run's status as rank 0 left it.

    The cause is the first failure torchrun observed; within the same second (its timestamps
    are whole seconds) a rank that failed on its own wins over ranks that only lost contact
    with it. Rank 0's own message stands when rank 0 is the cause and already explained itself.
    """
    def symptom(failure) -> bool:
        return failure.exitcode == PEER_LOST_EXIT or (failure.exitcode < 0 and failure.signal_name() in SYMPTOM_SIGNALS)

    rank, failure = min(failures.items(), key=lambda item: (item[1].timestamp, symptom(item[1]), item[0]))
    if rank == 0 and failure.exitcode > 0 and not symptom(failure) and status.get("state") == "failed":
        return None
    if failure.exitcode < 0:
        what = f"died: killed by {failure.signal_name()}"
    else:
        what = f"failed with exit code {failure.exitcode}"
    return f"rank {rank} {what}; every rank stopped (details in worker.log); resume to continue from the last checkpoint"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not (Path(argv[0]) / "run.json").is_file():
        print("usage: python -m tui_ft.engine.group_launcher RUN_DIR (a folder with run.json)", file=sys.stderr)
        return 2
    run_dir = Path(argv[0]).resolve()
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    nproc = int(read_run_config(run_dir).get("nproc", 1))
    args = torchrun_args(run_dir, nproc)
    print(f"torchrun pid {os.getpid()} at {time.strftime('%Y-%m-%d %H:%M:%S')}: torchrun {' '.join(args)}", flush=True)

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from tui_ft.engine.worker import fail

    try:
        run(parse_args(args))
    except ChildFailedError as error:
        message = failure_message(error.failures, read_json(run_dir / STATUS_FILE))
        if message:
            fail(run_dir, message)
        return 1
    except SignalException as error:
        # torchrun passed the signal to every rank and waited for them: they wrote their own ending.
        print(f"torchrun received {error.sigval.name}", flush=True)
        return 0
    except Exception as error:  # noqa: BLE001 - a launch failure must end as a readable `failed`
        fail(run_dir, f"torchrun could not start the ranks: {type(error).__name__}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
