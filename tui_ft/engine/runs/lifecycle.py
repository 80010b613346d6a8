"""Run folders and their worker processes: create, launch, watch, stop, resume, list.

This is the API the CLI and the dashboard share. A run lives in ``checkpoints/<name>/``
(layout in DESIGN.md); its training runs in a separate OS process
(``python -m tui_ft.engine.runs.worker RUN_DIR``) in its own session, so closing the dashboard,
Ctrl+C in a terminal or an SSH hangup never stops it. Every function here is cheap: none
imports torch.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tui_ft.engine.files import UnsafeFileError, open_log, read_json, refuse_link, warn_skipped, write_json_atomic
from tui_ft.engine.processes import (
    GROUP_MODULE,
    RUN_MODULES,
    STOP_FILE,
    TRUST_FLAG,
    WORKER_MODULE,
    ask_to_stop,
    child_env,
    owned_process,
    process_alive,
    python_command,
    start_time,
)
from tui_ft.engine.runs.config import RUN_NAME_PATTERN, ConfigError, TrainConfig
from tui_ft.engine.runs.config_checks import find_dataset, validate_config
from tui_ft.engine.runs.folder import LOG_FILE, RUN_FILE, STATUS_FILE, read_run_config, update_status
from tui_ft.engine.runs.memory_plan import check_memory, longest_example_tokens
from tui_ft.engine.runs.record import RunRecord
from tui_ft.engine.runs.state import FINAL_STATES, LIVE_STATES, RunState
from tui_ft.engine.workspace import CHECKPOINTS, run_dir_by_name


class RunError(Exception):
    """An action the run's state does not allow (resume a running run...); one line for the user."""


@dataclass
class RunInfo:
    """One run as the run list shows it (``state`` reads ``died`` for a dead worker)."""

    name: str
    path: Path
    state: str
    step: int
    total_steps: int | None
    method: str
    model: str
    dataset: str
    started: float | None
    updated: float | None
    message: str
    pid: int | None


def run_dir_for(home: Path, name: str) -> Path:
    """The folder of run ``name`` in workspace ``home``; raises :class:`RunError` when there is none."""
    path = run_dir_by_name(home, name)
    if path is None:
        raise RunError(f"{name}: no such run in {Path(home) / CHECKPOINTS}")
    return path


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for package in ("tui_ft", "torch", "transformers", "peft"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def _unique_name(home: Path, config: TrainConfig) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(config.dataset).stem).strip("-._")[:32] or "data"
    base = f"{config.method}-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    name, counter = base, 2
    while (home / "checkpoints" / name).exists():
        name, counter = f"{base}-{counter}", counter + 1
    return name


def create_run(config: TrainConfig, home: Path, check_plan: bool = True) -> Path:
    """Validate ``config`` and create its run folder with ``run.json`` and a ``queued`` status.

    The model reference is resolved (the default model is converted the first time) and the
    template is fixed now (the model's default when the config names none), so ``run.json``
    records exactly what the worker will use. A Hub model's config and tokenizer are fetched
    now and its weights by the worker (a run is created in seconds, whatever the model's
    size); ``model_revision`` pins the commit fetched, so a branch that moves later changes
    nothing for this run.

    ``check_plan`` refuses a run the memory plan says will not fit on this machine (unless
    ``ignore_memory_plan`` is set); it is off for a run started elsewhere (``--create-only``).

    Raises:
        ConfigError: With every ``(field, message)`` problem; no folder is created then.
        MemoryPlanError: The run will not fit: one line naming the cheapest fix; no folder either.
    """
    from tui_ft.engine.data.templates import default_template
    from tui_ft.engine.models import load_tokenizer, resolve_model

    home = Path(home)
    config = config.resolved()
    errors = validate_config(config, home)
    if errors:
        raise ConfigError(errors)
    resolved = resolve_model(config.model, home, weights=False)
    tokenizer = load_tokenizer(resolved.path)
    template = config.template or default_template(tokenizer)
    # Found once (a Hub dataset asks the Hub each time it is looked for).
    dataset, dataset_source = _dataset_file(config.dataset, home)
    eval_dataset, eval_source = _dataset_file(config.eval_dataset, home) if config.eval_dataset else (None, None)
    if check_plan:  # config.json and the longest example are enough: refused before any weights download
        longest = longest_example_tokens(Path(dataset), tokenizer, template)
        check_memory(config, resolved.path, longest)
    name = config.name or _unique_name(home, config)
    record = RunRecord(
        config=dataclasses.replace(config, name=name, template=template, dataset=dataset, eval_dataset=eval_dataset),
        name=name,
        model_path=resolved.path,
        template=template,
        base_adapter=resolved.adapter,
        # The snapshot's commit: the worker fetches the weights of exactly what was checked here.
        model_revision=resolved.revision if resolved.kind == "hf-cache" else None,
        created=time.time(),
        versions=_versions(),
        dataset_source=dataset_source,
        eval_dataset_source=eval_source,
    )
    run_dir = home / "checkpoints" / name
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir()  # never exist_ok: two launches must not share a folder
    write_json_atomic(run_dir / RUN_FILE, record.to_json())
    write_json_atomic(run_dir / STATUS_FILE, _initial_status())
    return run_dir


def _dataset_file(ref: str, home: Path) -> tuple[str, str | None]:
    """The file a run reads for dataset ``ref``, and where it came from when that is the Hub (pinned), else ``None``.

    A Hub dataset's file is kept as the cache's snapshot path, not resolved: the snapshot holds
    links into ``blobs/``, whose names have no suffix to tell the format by.
    """
    from tui_ft.engine.data.hub_datasets import fetch_pinned, is_hub_dataset

    if is_hub_dataset(ref):
        path, pinned = fetch_pinned(ref)
        return str(path.absolute()), pinned
    return str(find_dataset(ref, home).resolve()), None


def _initial_status() -> dict:
    now = time.time()
    return {"state": RunState.QUEUED, "pid": None, "step": 0, "total_steps": None, "epoch": 0.0,
            "message": "waiting for the worker", "started": None, "updated": now}


def worker_command(run_dir: Path, trust_remote_code: bool = False) -> list[str]:
    """The command that trains the run: the worker, or the group launcher over ``nproc`` workers.

    Several processes start under :mod:`tui_ft.engine.runs.group_launcher`, which starts one worker
    per rank on this machine (no network listener) and names a failed rank in ``status.json``.
    The module runs without the current folder (the run folder) on ``sys.path``
    (:func:`~tui_ft.engine.processes.python_command`). ``trust_remote_code`` is this launch's
    own choice, never ``run.json``'s.
    """
    nproc = run_nproc(read_run_config(run_dir))
    module = GROUP_MODULE if nproc > 1 else WORKER_MODULE
    return python_command(module, str(run_dir), *([TRUST_FLAG] if trust_remote_code else []))


def run_nproc(config: dict) -> int:
    """The number of processes ``run.json`` asks for, checked against this machine.

    ``run.json`` may come from elsewhere (a shared or copied run): a count that is not a whole
    number from 1 to the machine's GPUs or CPU cores (whichever is more) is refused rather than
    started as that many processes.

    Raises:
        RunError: The count is not such a number.
    """
    nproc = config.get("nproc", 1)
    nproc = 1 if nproc is None else nproc
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise RunError(f"run.json: nproc must be a whole number of processes (1 or more), got {nproc!r}")
    limit = os.cpu_count() or 1
    if nproc > limit:
        from tui_ft.engine.models.devices import visible_gpu_count

        limit = max(limit, visible_gpu_count())
    if nproc > limit:
        raise RunError(f"run.json: nproc {nproc} is more processes than this machine has GPUs or CPU cores ({limit})")
    return nproc


def check_model_code(run_dir: Path, trust_remote_code: bool = False) -> None:
    """Refuse a run whose model needs its own Python code, unless this command trusts it.

    ``run.json`` may come from someone else: its ``trust_remote_code`` and ``model_path`` are
    not the user's consent, so the model folder it names gets the same check as a new run's.

    Raises:
        RunError: The model ships its own code (``auto_map``) and ``trust_remote_code`` is off.
    """
    if trust_remote_code:
        return
    from tui_ft.engine.models import model_code_problem

    problem = model_code_problem(read_run_config(run_dir).get("model_path"))
    if problem:
        raise RunError(problem)


def launch_run(run_dir: Path, trust_remote_code: bool = False) -> int:
    """Start the run's worker detached (own session, stdin /dev/null, output to ``worker.log``).

    Args:
        run_dir: The run folder.
        trust_remote_code: Run the model's own Python code: the user's choice for this launch
            (``--trust-remote-code``, ``--set trust_remote_code=true`` for a new run); what
            ``run.json`` says is never enough.

    Returns:
        The worker's pid (for several processes, the group launcher's: the parent of every rank).

    Raises:
        RunError: ``worker.log`` is a symbolic link (or not a regular file), or the model
            needs its own code and ``trust_remote_code`` is off.
    """
    run_dir = Path(run_dir).resolve()
    check_model_code(run_dir, trust_remote_code)
    env = child_env(PYTHONUNBUFFERED="1")
    # The group launcher gives the ranks this long to stop after SIGTERM before killing them
    # (torchrun's variable and default is 30 s): a stop writes a checkpoint first, which takes
    # longer for a big model.
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "600")
    # OpenMP threads that spin while waiting slow training several-fold when the CPU is shared
    # (the dashboard, other runs, other users); sleeping threads cost little when it is not
    # (bench/README.md has the step times).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = worker_command(run_dir, trust_remote_code)
    try:
        log = open_log(run_dir / LOG_FILE)  # never through a link planted as worker.log
    except UnsafeFileError as error:
        raise RunError(str(error)) from None
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=run_dir,
            env=env,
        )
    finally:
        os.close(log)
    status = read_json(run_dir / STATUS_FILE)
    if status.get("state") == RunState.QUEUED and not status.get("pid"):
        # The worker writes its own status once Python starts; until then the pid is known here,
        # with its start time: `runs stop` signals only a pid whose start time matches.
        update_status(run_dir, pid=process.pid, pid_started=start_time(process.pid), message="starting the worker")
    return process.pid


def read_status(run_dir: Path) -> dict:
    """The run's ``status.json``; a live state whose worker is gone reads ``died``.

    Keys: ``state``, ``pid``, ``step``, ``total_steps``, ``epoch``, ``message``, ``started``,
    ``updated`` (heartbeat, seconds since the epoch), and ``eta_s`` and ``checkpoint`` (the
    latest checkpoint's step) once the worker reports them.
    """
    status = read_json(Path(run_dir) / STATUS_FILE) or _initial_status()
    state = status.get("state")
    if state in LIVE_STATES and status.get("pid") and not process_alive(status["pid"], status.get("pid_started")):
        status = dict(status, state=RunState.DIED,
                      message=f"the worker (pid {status['pid']}) is gone; resume to continue from the last checkpoint")
    return status


def list_runs(home: Path) -> list[RunInfo]:
    """Every run in ``home/checkpoints``, oldest first."""
    root = Path(home) / "checkpoints"
    runs = []
    for run_dir in root.iterdir() if root.is_dir() else []:
        config = read_run_config(run_dir)
        if not config:
            if os.path.lexists(run_dir / RUN_FILE):
                warn_skipped(run_dir / RUN_FILE, "not a readable JSON object of at most a few MB, in a regular file")
            continue
        status = read_status(run_dir)
        runs.append((_typed(config.get("created"), (int, float), 0.0), RunInfo(
            name=run_dir.name, path=run_dir, state=str(status.get("state", RunState.QUEUED)),
            step=_typed(status.get("step"), int, 0), total_steps=_typed(status.get("total_steps"), int, None),
            method=_typed(config.get("method"), str, "?"), model=_typed(config.get("model"), str, "?"),
            dataset=_typed(config.get("dataset"), str, "?"),
            started=_typed(status.get("started"), (int, float), None), updated=_typed(status.get("updated"), (int, float), None),
            message=str(status.get("message", "")), pid=_typed(status.get("pid"), int, None),
        )))
    return [info for _, info in sorted(runs, key=lambda pair: (pair[0], pair[1].name))]


def _typed(value, kinds, default):
    """``value`` when it has the expected type, else ``default``.

    A damaged or hand-edited ``status.json`` can hold valid JSON of the wrong types; the run
    list (the CLI table, the Runs pane's progress and ages) must still show every run.
    """
    return value if isinstance(value, kinds) and not isinstance(value, bool) else default


def stop_run(run_dir: Path) -> bool:
    """Ask the run to stop: write ``STOP`` and send SIGTERM; the worker checkpoints at the next step.

    SIGTERM goes only to this run's own worker (:func:`~tui_ft.engine.processes.ask_to_stop`): a ``status.json``
    naming any other process, by pid reuse or on purpose, gets nothing signalled.

    Returns:
        True when a live worker was asked; False when there was none (a queued run that never
        started is marked ``stopped`` at once) or the pid in ``status.json`` is not this run's
        worker (only the ``STOP`` file asks then).
    """
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if status["state"] in FINAL_STATES:
        return False
    if ask_to_stop(run_dir, status, RUN_MODULES):
        return True
    if status["state"] == RunState.QUEUED:
        update_status(run_dir, state=RunState.STOPPED, message="stopped before the worker started")
    return False


def delete_run(run_dir: Path, wait_s: float = 300.0) -> None:
    """Delete a run's folder, checkpoints and all; a live run is stopped first.

    The worker is asked to stop and waited for (it may be writing a checkpoint: deleting under
    it would leave half a folder that it then recreates), up to ``wait_s`` seconds.

    Raises:
        RunError: When the folder is a link (deleted by hand only: never what it points to), or
            the worker did not exit in time (nothing deleted then).
    """
    import shutil

    run_dir = Path(run_dir)
    if run_dir.is_symlink():
        raise RunError(f"{run_dir.name} is a link to {os.readlink(run_dir)}: remove the link by hand")
    status = read_status(run_dir)
    if status["state"] in LIVE_STATES and stop_run(run_dir):
        deadline = time.monotonic() + wait_s
        while owned_process(status.get("pid"), status.get("pid_started"), run_dir, RUN_MODULES) is not None:
            if time.monotonic() > deadline:
                raise RunError(f"{run_dir.name} did not stop within {wait_s:.0f} s: nothing deleted "
                               "(tui-ft runs stop it, then delete it again)")
            time.sleep(0.2)
    shutil.rmtree(run_dir)


def move_run_folder(run_dir: Path, new_name: str) -> Path:
    """Rename a run's folder to ``checkpoints/<new_name>`` and its ``run.json`` name; return the new folder.

    Only the folder and ``run.json``: :func:`tui_ft.engine.evaluation.run_rename.rename_run` also
    moves the run's stored results, and is what the CLI and the dashboard call.

    Raises:
        RunError: One line, and nothing changed, when: the name is not a safe run name or is
            taken; the folder is a link; its worker is live (a worker writes to the path it was
            started with); another run was trained on it (that run's ``run.json`` names this
            folder, and would lose its base model).
    """
    run_dir = Path(run_dir)
    old_name = run_dir.name
    if not RUN_NAME_PATTERN.fullmatch(new_name) or ".." in new_name:
        raise RunError(f"{new_name!r} is not a safe run name (letters, digits, '.', '_', '-'; 64 at most)")
    target = run_dir.parent / new_name
    if new_name == old_name:
        return run_dir
    if os.path.lexists(target):
        raise RunError(f"a run named {new_name!r} already exists")
    if run_dir.is_symlink():
        raise RunError(f"{old_name} is a link to {os.readlink(run_dir)}: rename the link by hand")
    status = read_status(run_dir)
    if status["state"] in LIVE_STATES and status.get("pid") is not None:
        raise RunError(f"{old_name} is {status['state']}: stop it first (its worker writes to {old_name}/)")
    children = _runs_trained_on(run_dir)
    if children:
        raise RunError(f"{old_name} cannot be renamed: {', '.join(children)} trained on it and "
                       f"{'its' if len(children) == 1 else 'their'} run.json names it")
    config = read_run_config(run_dir)
    os.rename(run_dir, target)  # one directory entry: never half a run under each name
    if config:
        write_json_atomic(target / RUN_FILE, config | {"name": new_name})
    return target


def _runs_trained_on(run_dir: Path) -> list[str]:
    """The other runs whose ``run.json`` names ``run_dir`` as their base (by name or by a path inside it)."""
    home_runs, here = run_dir.parent, run_dir.resolve()
    found = []
    for other in sorted(home_runs.iterdir()):
        if other.name == run_dir.name:
            continue
        config = read_run_config(other)
        paths = [config.get(key) for key in ("model_path", "base_adapter")] if config else []
        if config and (config.get("model") == run_dir.name
                       or any(isinstance(p, str) and Path(p).is_relative_to(here) for p in paths)):
            found.append(other.name)
    return found


def resume_run(run_dir: Path, trust_remote_code: bool = False) -> int:
    """Start a worker again for a stopped, died or failed run; it continues from the latest checkpoint.

    Args:
        run_dir: The run folder.
        trust_remote_code: Run the model's own Python code (``runs resume --trust-remote-code``);
            ``run.json`` saying so is not enough.

    Returns:
        The new worker's pid.

    Raises:
        RunError: When the run is still running or already finished, or its model needs its
            own code and ``trust_remote_code`` is off.
    """
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if status["state"] in LIVE_STATES and process_alive(status.get("pid"), status.get("pid_started")):
        raise RunError(f"{run_dir.name} is still {status['state']} (pid {status['pid']})")
    if status["state"] == RunState.FINISHED:
        raise RunError(f"{run_dir.name} has already finished")
    run_nproc(read_run_config(run_dir))  # a bad count is refused before the status changes
    check_model_code(run_dir, trust_remote_code)  # so is a model with its own code, unless trusted now
    try:
        refuse_link(run_dir / LOG_FILE)  # and a worker.log planted as a link
    except UnsafeFileError as error:
        raise RunError(str(error)) from None
    (run_dir / STOP_FILE).unlink(missing_ok=True)  # a link is removed itself, never its target
    update_status(run_dir, state=RunState.QUEUED, pid=None, pid_started=None, message="resuming")
    # The one-argument call when not trusting: tests stand in for launch_run with launch_run(run_dir).
    return launch_run(run_dir, trust_remote_code=True) if trust_remote_code else launch_run(run_dir)
