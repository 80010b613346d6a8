"""Detached evaluation jobs: start, read, list and stop them (the worker is :mod:`.worker`).

An evaluation that takes more than a few seconds runs like a training run: its own process in
its own session (stdin from /dev/null, output to ``worker.log``), so closing the dashboard or an
SSH hangup does not stop it. A job lives in ``<home>/bench/jobs/<id>/``:

- ``job.json`` — what to evaluate (written once, before the worker starts);
- ``status.json`` — ``state`` (queued, running, stopping, stopped, finished, failed; a dead
  worker's unfinished job reads ``died``), ``pid`` and ``pid_started`` (its start time: a stop
  signals only that process, and only while it runs this job), ``done``, ``total`` (items), ``message``,
  ``results`` (one summary a finished result), ``started``, ``updated``; written atomically;
- ``worker.log`` — the worker's stdout and stderr;
- ``STOP`` — created to ask the worker to stop between items (SIGTERM does the same).

Results themselves go to the result store, so the table reads them like any other result.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from datetime import datetime
from pathlib import Path

from tui_ft.engine.evaluation.store import JOBS_FOLDER, now_iso
from tui_ft.engine.files import open_log, read_json, write_json_atomic
from tui_ft.engine.processes import (
    EVAL_MODULE,
    EVAL_MODULES,
    ask_to_stop,
    child_env,
    parse_pid,
    process_alive,
    python_command,
    start_time,
)
from tui_ft.engine.runs.state import FINAL_STATES, RunState

PROGRESS_INTERVAL_S = 0.5  # status writes are throttled: a small model scores many items a second


def jobs_dir(home: Path) -> Path:
    """Where evaluation jobs live: ``<home>/bench/jobs``."""
    return Path(home) / "bench" / JOBS_FOLDER


def _as_list(paths) -> list[str]:
    if paths is None:
        return []
    return [str(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]


def start_eval_job(home: Path, refs, benchmark=None, perplexity_path=None, checkpoint: str | None = None, *,
                   template: str | None = None, scorer: str | None = None, max_new_tokens: int | None = None,
                   use_cache: bool = True, reward_prompts=None, reward: str | None = None) -> Path:
    """Check the inputs, then start a detached evaluation job and return its folder at once.

    Args:
        home: The workspace.
        refs: One model reference or several.
        benchmark: A benchmark file, or a list of them.
        perplexity_path: A dataset for perplexity, or a list of them.
        checkpoint: ``"step-N"`` of a run, or ``None`` for final weights.
        template: ``alpaca`` or ``chat`` (default: the run's or the model's own).
        scorer: ``contains``, ``exact`` or ``choice`` (default: by the items).
        max_new_tokens: Generation limit for benchmarks (default 64).
        use_cache: Reuse stored results.
        reward_prompts: A prompt sheet (or a list of them) whose replies ``reward`` judges.
        reward: A finished reward run (``--method reward``), by name or folder.

    Raises:
        DatasetError, ModelError, ValueError: Bad input, found before anything starts.
    """
    from tui_ft.engine.evaluation.evaluate import ModelSession, check_plan

    home = Path(home).resolve()
    refs = [refs] if isinstance(refs, str) else list(refs)
    if not refs:
        raise ValueError("no model to evaluate")
    tasks, judge = check_plan(home, _as_list(benchmark), _as_list(perplexity_path), _as_list(reward_prompts), reward,
                              scorer)
    for ref in refs:
        ModelSession(ref, home, checkpoint)  # resolves only; no weights are loaded here
    job_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    job_dir = jobs_dir(home) / job_id
    job_dir.mkdir(parents=True)
    job = {
        "id": job_id, "home": str(home), "refs": refs, "checkpoint": checkpoint, "template": template,
        "scorer": scorer, "max_new_tokens": max_new_tokens, "use_cache": use_cache, "created": now_iso(),
        # Absolute: the worker runs in the workspace, not in the caller's current folder.
        "benchmarks": [str(t.path.resolve()) for t in tasks if t.kind == "benchmark"],
        "perplexity": [str(t.path.resolve()) for t in tasks if t.kind == "perplexity"],
        "reward_prompts": [str(t.path.resolve()) for t in tasks if t.kind == "reward"],
        "reward": str(judge.run_dir) if judge else None,  # the folder: the job never picks another run of that name
    }
    write_json_atomic(job_dir / "job.json", job)
    total = len(refs) * sum(len(t.records) for t in tasks)
    write_json_atomic(job_dir / "status.json", {"state": RunState.QUEUED, "pid": None, "done": 0, "total": total,
                                                "message": "starting", "results": [], "updated": now_iso()})
    # Started without the workspace (its current folder) on sys.path: a module planted there is never imported.
    log = open_log(job_dir / "worker.log")  # a fresh folder; never through a link all the same
    try:
        process = subprocess.Popen(python_command(EVAL_MODULE, str(job_dir)), cwd=home, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                   env=child_env())
    finally:
        os.close(log)
    status = read_json(job_dir / "status.json") or {}
    if status.get("state") == RunState.QUEUED and status.get("pid") is None:
        # Tell readers the pid at once (with its start time, which a stop checks); the worker
        # overwrites this with its own writes.
        write_json_atomic(job_dir / "status.json", status | {"pid": process.pid, "pid_started": start_time(process.pid),
                                                             "updated": now_iso()})
    return job_dir


def read_job_status(job_dir: Path) -> dict:
    """A job's status with its ``id``, ``dir`` and ``job`` (what it evaluates).

    A job whose worker is gone before reaching a final state reads ``died``.
    """
    job_dir = Path(job_dir)
    status = read_json(job_dir / "status.json")
    if not isinstance(status, dict) or not status:
        status = {"state": RunState.FAILED, "message": "no status.json", "done": 0, "total": 0}
    raw_pid, status["pid"] = status.get("pid"), parse_pid(status.get("pid"))
    if raw_pid is not None and status["pid"] is None and status.get("state") not in FINAL_STATES:
        status["state"] = RunState.DIED  # -1, 0, "x": a damaged status names no worker, and nothing is signalled
    if status.get("state") not in FINAL_STATES and not process_alive(status.get("pid"), status.get("pid_started")):
        # A queued job has no pid for a moment while it launches; give it that moment.
        if status.get("pid") is not None or status.get("state") != RunState.QUEUED:
            status["state"] = RunState.DIED
    return status | {"id": job_dir.name, "dir": str(job_dir), "job": read_json(job_dir / "job.json") or {}}


def list_jobs(home: Path) -> list[dict]:
    """Every evaluation job in the workspace, newest first, as :func:`read_job_status` reads it."""
    folder = jobs_dir(home)
    dirs = sorted((p for p in folder.iterdir() if (p / "job.json").is_file()), reverse=True) if folder.is_dir() else []
    return [read_job_status(d) for d in dirs]


def stop_eval_job(job_dir: Path) -> bool:
    """Ask a job to stop between items (STOP file and SIGTERM); False when it already ended."""
    job_dir = Path(job_dir)
    status = read_job_status(job_dir)
    if status["state"] in FINAL_STATES:
        return False
    ask_to_stop(job_dir, status, EVAL_MODULES)  # the job's own worker only gets SIGTERM
    return True
