"""Process entry for one run: ``python -m tui_ft.engine.runs.worker RUN_DIR [--trust-remote-code]``.

Started by :func:`tui_ft.engine.runs.lifecycle.launch_run` in its own session with output to
``worker.log``, without the run folder on ``sys.path``
(:func:`tui_ft.engine.processes.python_command`). ``--trust-remote-code`` is the launching
command's consent to run the model's own code; ``run.json`` saying so is not.

SIGTERM and SIGINT ask for a stop (checkpoint at the next step boundary, then
``stopped``); SIGHUP is ignored, so an SSH hangup never ends training. Every ending is
written to ``status.json``: ``finished``, ``stopped`` or ``failed`` with the reason.

With several processes (``nproc`` > 1: :mod:`tui_ft.engine.runs.group_launcher` on one machine,
or torchrun across servers) every process runs this module; each joins the process group and
logs one line (rank, world size, device, backend); only rank 0 writes the run's files, and its
``pid`` is its parent's (the launcher's), the parent of every rank.

A rank that fails on its own (out of memory on one GPU, a crash) must not leave the others
waiting in a collective until NCCL's watchdog fires: it writes its reason to
``rank-N.error.json`` in the run folder (and to ``status.json`` when nobody has yet), then
exits non-zero at once, without the graceful teardown that could wait on its peers. torchrun
or the group launcher then stops the other ranks, and the launcher names the failed rank and
its reason in ``status.json``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

from tui_ft.engine.files import read_json, write_json_atomic
from tui_ft.engine.processes import STOP_FILE, TRUST_FLAG, start_time
from tui_ft.engine.runs.folder import METRICS_FILE, STATUS_FILE, MetricsWriter, read_run_config, update_status
from tui_ft.engine.runs.state import RunState

# Exit status of a rank that failed because another one went away (a symptom, not the cause).
PEER_LOST_EXIT = 3
RANK_ERROR_SUFFIX = ".error.json"  # rank-N.error.json: why rank N failed, for whoever reports the run's ending


class StopFlag:
    """Set by a signal handler; polled by the trainer at step boundaries."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def handle(self, signum, _frame) -> None:
        self.requested = True
        print(f"received {signal.Signals(signum).name}: stopping at the next step boundary", flush=True)


def mark_running(run_dir: Path, pid: int | None = None) -> None:
    """Claim the run: the run's pid (ours, or the group launcher's), its start time (against pid reuse) and the first start time."""
    pid = pid or os.getpid()
    started = read_json(run_dir / STATUS_FILE).get("started") or time.time()
    update_status(run_dir, state=RunState.RUNNING, pid=pid, pid_started=start_time(pid), started=started,
                  message="starting")


def fail(run_dir: Path, message: str) -> None:
    """Mark the run ``failed`` with ``message`` and log it as an event."""
    print(f"failed: {message}", flush=True)
    status = update_status(run_dir, state=RunState.FAILED, message=message)
    writer = MetricsWriter(run_dir / METRICS_FILE)
    writer.log("event", status.get("step", 0), status.get("epoch", 0.0), event="failed", message=message)
    writer.close()


def run_worker(run_dir: Path, stop: StopFlag | None = None, group=None, trust_remote_code: bool = False) -> int:
    """Train the run; returns the exit status (0 finished or stopped, 1 failed).

    Args:
        group: This process's :class:`~tui_ft.engine.training.distributed.Group` among several;
            ``None`` for a single process.
        trust_remote_code: Let the model's own code run (the launch's ``--trust-remote-code``).
    """
    from tui_ft.engine.models import ModelError
    from tui_ft.engine.runs.weights_download import fetch_weights
    from tui_ft.engine.training.distributed import Group
    from tui_ft.engine.training.trainer import TrainingFailed, train_run

    group = group or Group()
    stop = stop or StopFlag()
    run_dir = Path(run_dir).resolve()
    if group.active:
        rank_error_path(run_dir, group.rank).unlink(missing_ok=True)  # an earlier attempt's reason is not this one's
    if group.is_main:
        mark_running(run_dir, os.getppid() if group.active else None)
    try:
        # A Hub model's weights come first (create_run fetched its config and tokenizer only).
        if fetch_weights(run_dir, lambda: stop() or (run_dir / STOP_FILE).exists(), group.is_main):
            return 0  # stopped while downloading: resuming continues the partial download
        state = train_run(run_dir, stop, group, trust_remote_code)
    except (TrainingFailed, ModelError) as error:
        if error.__cause__ is not None:  # what torch said (which device, how many bytes) is worth keeping
            print(f"caused by {type(error.__cause__).__name__}: {error.__cause__}", flush=True)
        return report_failure(run_dir, group, str(error), every_rank=getattr(error, "every_rank", False))
    except Exception as error:  # noqa: BLE001 - any crash must end as a readable `failed`
        traceback.print_exc()
        if group.active and peer_lost(error):
            message = f"rank {group.rank} lost contact with another rank: {str(error).splitlines()[0][:200]}"
            print(message, flush=True)
            if group.is_main and not read_rank_errors(run_dir):
                # Not `failed` yet: the group launcher names the rank that went away (it may be
                # that one's own failure that is worth reading); a bare torchrun's exit reads `died`.
                # A rank that wrote why it failed has already told status.json: that reason stands.
                update_status(run_dir, message=f"{message} (details in worker.log)")
            return PEER_LOST_EXIT
        return report_failure(run_dir, group, f"{type(error).__name__}: {error} (details in worker.log)")
    if group.is_main:
        print(f"{state} at {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    return 0


def report_failure(run_dir: Path, group, message: str, every_rank: bool = False) -> int:
    """Tell why this rank failed; returns its exit status (1).

    Rank 0 marks the run ``failed``. Another rank writes ``rank-N.error.json`` (the group
    launcher reads it) and, unless the run already reads ``failed``, marks it ``failed`` itself
    with its rank named: under torchrun nobody else would, since rank 0 may be waiting for it in
    a collective. A failure that every rank meets at once (``every_rank``: a non-finite loss,
    which every rank computes from the same reduced values) is reported by rank 0 alone.
    """
    if group.active:
        print(f"rank {group.rank} failed: {message}", flush=True)
        write_json_atomic(rank_error_path(run_dir, group.rank), {"rank": group.rank, "message": message, "time": time.time()})
    if group.is_main:
        fail(run_dir, message)
    elif not every_rank and read_json(run_dir / STATUS_FILE).get("state") != RunState.FAILED:
        fail(run_dir, f"rank {group.rank} failed: {message}")
    return 1


def rank_error_path(run_dir: Path, rank: int) -> Path:
    """Where rank ``rank`` writes why it failed."""
    return Path(run_dir) / f"rank-{int(rank)}{RANK_ERROR_SUFFIX}"


def read_rank_errors(run_dir: Path) -> dict[int, str]:
    """Why each rank that failed in this attempt failed: ``{rank: message}`` (no torch needed)."""
    errors = {}
    for path in Path(run_dir).glob(f"rank-*{RANK_ERROR_SUFFIX}"):
        record = read_json(path)
        rank, message = record.get("rank"), record.get("message")
        if isinstance(rank, int) and isinstance(message, str) and path.name == rank_error_path(run_dir, rank).name:
            errors[rank] = message
    return errors


def peer_lost(error: BaseException) -> bool:
    """True for a communication error: a collective failed because another rank went away."""
    import torch.distributed as dist

    text = str(error).lower()
    return isinstance(error, getattr(dist, "DistError", ())) or any(
        clue in text for clue in ("connection closed by peer", "connection reset by peer", "remote worker", "broken pipe"))


def end_with_parent() -> None:
    """Ask Linux for SIGTERM when our parent (the group launcher, or torchrun) dies, so no rank trains on as an orphan.

    Neither launcher does this for its ranks; a killed one would leave them holding GPUs.
    SIGTERM is a stop request: the ranks agree, checkpoint and end as ``stopped``.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


DEFAULT_NICE = 5


def yield_to_interactive_work() -> None:
    """Lower this process's CPU priority by ``$TUI_FT_WORKER_NICE`` (default 5).

    A detached run shares the CPU with the dashboard watching it. At equal priority the
    dashboard's key presses waited behind training's threads on a 2-core machine (key to
    repaint p95 400 ms, ``bench/ui_latency.py``); at +5 the scheduler lets the dashboard in
    first, while training still gets every cycle nobody else wants. It costs nothing on a GPU.
    """
    try:
        increment = int(os.environ.get("TUI_FT_WORKER_NICE", DEFAULT_NICE))
    except ValueError:
        increment = DEFAULT_NICE
    if increment > 0:
        try:
            os.nice(increment)
        except OSError:
            pass  # a platform without nice: train at the usual priority


def parse_args(argv: list[str], program: str) -> tuple[Path, bool] | None:
    """``RUN_DIR [--trust-remote-code]`` as ``(run_dir, trust_remote_code)``; ``None`` (after a usage line) when wrong."""
    trust = TRUST_FLAG in argv
    rest = [arg for arg in argv if arg != TRUST_FLAG]
    if len(rest) != 1 or not (Path(rest[0]) / "run.json").is_file():
        print(f"usage: python -m {program} RUN_DIR [{TRUST_FLAG}] (a folder with run.json)", file=sys.stderr)
        return None
    return Path(rest[0]), trust


def main(argv: list[str] | None = None) -> int:
    parsed = parse_args(sys.argv[1:] if argv is None else argv, "tui_ft.engine.worker")
    if parsed is None:
        return 2
    run_dir, trust = parsed
    # peft asks transformers' deprecated `is_gradient_checkpointing` of every model it wraps: a
    # FutureWarning in every LoRA run's log that no setting of ours can avoid (worker.log is the
    # user's to read, and that line read like a problem with their run).
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop.handle)
    signal.signal(signal.SIGINT, stop.handle)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    yield_to_interactive_work()
    from tui_ft.engine.training.distributed import join_group, launched_as_rank, leave_group

    if not launched_as_rank():
        print(f"worker pid {os.getpid()} for {run_dir} at {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
        return run_worker(run_dir, stop, trust_remote_code=trust)
    end_with_parent()
    group = join_group(read_run_config(run_dir).get("device", "auto"))
    print(f"worker pid {os.getpid()}: {group.describe()}, for {run_dir} at {time.strftime('%Y-%m-%d %H:%M:%S')}",
          flush=True)
    code = 1
    try:
        code = run_worker(run_dir, stop, group, trust)
    finally:
        if code == 0:
            leave_group(group)
        else:
            # Leave at once: destroying the group could wait on a collective the peers never
            # finish (NCCL), while this process's exit is what makes torchrun or the group
            # launcher stop the other ranks. The OS frees the GPU memory and the sockets.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
