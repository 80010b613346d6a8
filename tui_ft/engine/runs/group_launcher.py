"""Process entry for a run of several processes on this machine: ``python -m tui_ft.engine.runs.group_launcher RUN_DIR``.

It starts one :mod:`tui_ft.engine.runs.worker` per rank (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` in
their environment), as ``torchrun --standalone`` would, but with no network listener: torchrun's
rendezvous is a TCP store on every interface whose contents torch unpickles, so anyone who
could reach the port could run code as the user. Here the ranks meet through a
``torch.distributed`` file store in a private folder (``mkdtemp``, mode 0700), and gloo and
NCCL are bound to the loopback interface. Every rank is this process's child and this
process's pid is the run's pid: a run whose launcher is gone reads ``died``.

What torchrun did and this keeps: SIGTERM, SIGINT and SIGQUIT are passed to every rank (each
stops at the next step with a checkpoint), ranks still running after
``$TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` seconds (default 30) are killed; SIGHUP is ignored; when a
rank fails, the others are stopped and ``status.json`` names the rank that failed first, with
the reason it wrote (``rank-N.error.json``), else its exit code or signal. ``OMP_NUM_THREADS``
defaults to 1, as under torchrun.

:func:`tui_ft.engine.runs.lifecycle.launch_run` starts it detached, in its own session, with output to
``worker.log``; the ranks write there too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tui_ft.engine.files import read_json
from tui_ft.engine.processes import TRUST_FLAG, WORKER_MODULE, child_env, python_command
from tui_ft.engine.runs.folder import STATUS_FILE, read_run_config, update_status
from tui_ft.engine.runs.state import RunState

PEER_LOST_EXIT = 3  # tui_ft.engine.runs.worker's exit status for "another rank went away" (not imported: no torch here)
SYMPTOM_SIGNALS = ("SIGTERM", "SIGABRT")  # our own shutdown signal; gloo aborts when a peer vanishes
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)  # SIGHUP is not: an SSH hangup must not end training
POLL_S = 0.1
DEFAULT_SHUTDOWN_S = 30.0


@dataclass(frozen=True)
class RankFailure:
    """A rank that ended badly: its exit code (negative: the signal that ended it) and when it was seen."""

    exitcode: int
    timestamp: int

    def signal_name(self) -> str:
        try:
            return signal.Signals(-self.exitcode).name
        except ValueError:
            return "<N/A>"


def loopback_interface() -> str:
    """The name of the loopback interface (``lo`` on Linux, ``lo0`` on macOS), for gloo and NCCL."""
    import socket

    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address.startswith("127.") for a in addresses):
            return name
    return "lo"


def rank_env(rank: int, world: int, store: Path, interface: str) -> dict[str, str]:
    """The environment of rank ``rank`` of ``world``: its place, the file store, loopback-only sockets."""
    env = child_env()
    for name in list(env):
        if name.startswith("TORCHELASTIC_") or name in ("MASTER_ADDR", "MASTER_PORT", "GROUP_RANK", "ROLE_RANK"):
            del env[name]  # a torchrun around whoever launched us is not our rendezvous
    env.setdefault("OMP_NUM_THREADS", "1")
    env |= {
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
        "TUI_FT_INIT_METHOD": f"file://{store}",
        # One machine: peers are on loopback, and the sockets gloo and NCCL open are bound there.
        "GLOO_SOCKET_IFNAME": interface, "NCCL_SOCKET_IFNAME": interface,
    }
    return env


def failure_message(failures: dict, status: dict, errors: dict[int, str] | None = None) -> str | None:
    """What ``status.json`` should say after ranks failed; ``None``: keep rank 0's message.

    Args:
        failures: rank -> failure with ``exitcode``, ``timestamp`` (whole seconds) and
            ``signal_name()`` (:class:`RankFailure`, or torchrun's own failures).
        status: The run's status as rank 0 left it.
        errors: rank -> why it failed, from the ranks' ``rank-N.error.json`` files
            (:func:`tui_ft.engine.runs.worker.read_rank_errors`).

    The cause is the first failure observed; within the same second a rank that failed on its
    own wins over ranks that only lost contact with it, and one that said why over one that did
    not. A rank that wrote why it failed is the cause even when only its peers' exits were seen
    (it may still be exiting when they notice it is gone). Rank 0's own message stands when
    rank 0 is the cause and already explained itself.
    """
    errors = errors or {}

    def symptom(failure) -> bool:
        return failure.exitcode == PEER_LOST_EXIT or (failure.exitcode < 0 and failure.signal_name() in SYMPTOM_SIGNALS)

    rank, failure = min(failures.items(),
                        key=lambda item: (item[1].timestamp, symptom(item[1]), item[0] not in errors, item[0]))
    if symptom(failure) and set(errors) - {rank}:
        rank = min(set(errors) - {rank})
        failure = RankFailure(1, failure.timestamp)
    if status.get("state") == RunState.FAILED and not symptom(failure) and (
            rank == 0 and failure.exitcode > 0 or (0 in errors and errors.get(rank) == errors[0])):
        return None  # rank 0 explained it (a failure every rank met at once reads the same on each)
    if rank in errors and not symptom(failure):
        reason = errors[rank]
        details = "" if "worker.log" in reason else " (details in worker.log)"
        return f"rank {rank} failed: {reason}; every rank stopped{details}"
    if failure.exitcode < 0:
        what = f"died: killed by {failure.signal_name()}"
    else:
        what = f"failed with exit code {failure.exitcode}"
    return f"rank {rank} {what}; every rank stopped (details in worker.log); resume to continue from the last checkpoint"


class Group:
    """The ranks of one run, started and watched by this process."""

    def __init__(self, run_dir: Path, nproc: int, trust_remote_code: bool):
        self.run_dir, self.nproc = run_dir, nproc
        self.args = [str(run_dir)] + ([TRUST_FLAG] if trust_remote_code else [])
        self.ranks: list[subprocess.Popen] = []
        self.received: int | None = None  # a signal to pass on
        try:
            self.shutdown_s = float(os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_S))
        except ValueError:
            self.shutdown_s = DEFAULT_SHUTDOWN_S

    def on_signal(self, signum, _frame) -> None:
        self.received = signum  # acted on by the watch loop, not here (a handler must not wait)

    def start(self, store_dir: Path) -> None:
        interface = loopback_interface()
        store = store_dir / "store"
        for rank in range(self.nproc):
            self.ranks.append(subprocess.Popen(
                python_command(WORKER_MODULE, *self.args), env=rank_env(rank, self.nproc, store, interface),
                cwd=self.run_dir, stdin=subprocess.DEVNULL, close_fds=True))

    def watch(self) -> tuple[str, dict[int, RankFailure]]:
        """Wait until every rank ended, a rank failed or a signal came: ``("finished" | "failed" | "signal", failures)``."""
        while True:
            if self.received is not None:
                return "signal", {}
            codes = [rank.poll() for rank in self.ranks]
            failures = {r: RankFailure(code, int(time.time())) for r, code in enumerate(codes) if code not in (None, 0)}
            if failures:
                return "failed", failures
            if all(code == 0 for code in codes):
                return "finished", {}
            time.sleep(POLL_S)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to every rank still running; kill those still there after the shutdown timeout."""
        for rank in self.ranks:
            if rank.poll() is None:
                try:
                    rank.send_signal(signum)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.shutdown_s
        for rank in self.ranks:
            try:
                rank.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                rank.kill()
                rank.wait()


def main(argv: list[str] | None = None) -> int:
    from tui_ft.engine.runs.worker import fail, parse_args, read_rank_errors

    parsed = parse_args(sys.argv[1:] if argv is None else argv, "tui_ft.engine.runs.group_launcher")
    if parsed is None:
        return 2
    run_dir, trust = Path(parsed[0]).resolve(), parsed[1]
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    nproc = int(read_run_config(run_dir).get("nproc", 1))
    group = Group(run_dir, nproc, trust)
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, group.on_signal)
    print(f"group launcher pid {os.getpid()} at {time.strftime('%Y-%m-%d %H:%M:%S')}: {nproc} ranks of "
          f"{WORKER_MODULE} on this machine (file store rendezvous, gloo/NCCL on loopback)", flush=True)
    store_dir = Path(tempfile.mkdtemp(prefix="tui-ft-group-"))  # 0700: no other user reads or writes the store
    try:
        try:
            group.start(store_dir)
        except OSError as error:
            group.stop(signal.SIGKILL)
            fail(run_dir, f"could not start the ranks: {type(error).__name__}: {error}")
            return 1
        outcome, failures = group.watch()
        if outcome == "signal":
            name = signal.Signals(group.received).name
            print(f"group launcher received {name}: passing it to every rank", flush=True)
            group.stop(group.received)  # each rank stops at its next step and writes its own ending
            return 0
        if outcome == "failed":
            group.stop()  # the others first, as torchrun did: their last words must not overwrite ours
            status = read_json(run_dir / STATUS_FILE)
            message = failure_message(failures, status, read_rank_errors(run_dir))
            if message and status.get("state") == RunState.FAILED:
                # A rank already marked the run failed and logged the event: complete its message only.
                print(f"failed: {message}", flush=True)
                update_status(run_dir, message=message)
            elif message:
                fail(run_dir, message)
            return 1
        return 0
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
