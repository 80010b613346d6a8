"""The process of one evaluation job: ``python -m tui_ft.engine.evaluation.worker JOB_DIR``.

Started detached by :func:`tui_ft.engine.evaluation.jobs.start_eval_job`; it evaluates what
``job.json`` asks, writes its progress and results to ``status.json``, and stops between items
on SIGTERM or a ``STOP`` file.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

from tui_ft.engine.evaluation.jobs import PROGRESS_INTERVAL_S
from tui_ft.engine.evaluation.store import now_iso
from tui_ft.engine.files import read_json, write_json_atomic
from tui_ft.engine.processes import STOP_FILE, start_time
from tui_ft.engine.runs.state import RunState


class StatusWriter:
    """The worker's status file: progress (throttled), results, and the final state."""

    def __init__(self, job_dir: Path, total: int):
        self.path = job_dir / "status.json"
        self.status = {"state": RunState.RUNNING, "pid": os.getpid(), "pid_started": start_time(os.getpid()), "done": 0,
                       "total": total, "message": "", "results": [], "started": now_iso(), "updated": now_iso()}
        self.last_write = 0.0
        self.write()

    def write(self, **changes) -> None:
        self.status |= changes | {"updated": now_iso()}
        write_json_atomic(self.path, self.status)
        self.last_write = time.monotonic()

    def progress(self, done: int, total: int) -> None:
        self.status |= {"done": done, "total": total}
        if done >= total or time.monotonic() - self.last_write >= PROGRESS_INTERVAL_S:
            self.write()

    def add_result(self, record: dict) -> None:
        summary = {key: record.get(key) for key in ("model", "checkpoint", "kind", "benchmark", "dataset", "prompts",
                                                     "scorer", "score", "n", "perplexity", "tokens", "reward",
                                                     "reward_model_name", "cached", "key")}
        name = record.get("benchmark") or record.get("dataset") or record.get("prompts")
        value = {"benchmark": lambda: f"{record['score']:.3f}", "perplexity": lambda: f"ppl {record['perplexity']:.3f}",
                 "reward": lambda: f"reward {record['reward']:+.3f} ({record['reward_model_name']})"}[record["kind"]]()
        print(f"{record['model']} · {name}: {value}{' (stored)' if record.get('cached') else ''}", flush=True)
        self.write(results=self.status["results"] + [summary], message=f"{record['model']} · {name}: {value}")


def run_job(job_dir: Path) -> int:
    """Run the job in ``job_dir`` in this process; returns the exit status."""
    from transformers.utils import logging as hf_logging

    from tui_ft.engine.data.readers import DatasetError
    from tui_ft.engine.evaluation.evaluate import EvaluationStopped, default_settings, evaluate_many
    from tui_ft.engine.models import ModelError

    hf_logging.disable_progress_bar()  # progress is in status.json; bars would only clutter the log
    job = read_json(job_dir / "job.json")
    initial = read_json(job_dir / "status.json") or {}
    writer = StatusWriter(job_dir, initial.get("total", 0))
    stop_requested = False

    def request_stop(_signum, _frame):
        # Only a flag: writing the status here could interrupt a status write in progress.
        nonlocal stop_requested
        stop_requested = True

    def should_stop() -> bool:
        nonlocal stop_requested
        if not stop_requested and (job_dir / STOP_FILE).exists():
            stop_requested = True
        if stop_requested and writer.status["state"] == RunState.RUNNING:
            writer.write(state=RunState.STOPPING, message="stopping")
        return stop_requested

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"job {job['id']}: {', '.join(job['refs'])}", flush=True)
    try:
        settings = default_settings(job["max_new_tokens"]) if job.get("max_new_tokens") else None
        evaluate_many(
            job["refs"], Path(job["home"]), job["benchmarks"], job["perplexity"], job.get("checkpoint"),
            job.get("template"), settings, job.get("scorer"), use_cache=job.get("use_cache", True),
            progress=writer.progress, should_stop=should_stop,
            on_result=writer.add_result, reward_prompts=job.get("reward_prompts") or [], reward=job.get("reward"),
        )
    except EvaluationStopped:
        writer.write(state=RunState.STOPPED, message="stopped")
        return 0
    except (DatasetError, ModelError, ValueError) as error:
        print(error, flush=True)
        writer.write(state=RunState.FAILED, message=str(error).splitlines()[0])
        return 1
    except Exception as error:  # the log keeps the traceback; the status keeps one line
        traceback.print_exc()
        writer.write(state=RunState.FAILED, message=f"{type(error).__name__}: {error}")
        return 1
    writer.write(state=RunState.FINISHED, message="finished", done=writer.status["total"])
    print("finished", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m tui_ft.engine.evaluation.worker JOB_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / "job.json").is_file():
        print("usage: python -m tui_ft.engine.evaluation.worker JOB_DIR (a folder with job.json)", file=sys.stderr)
        return 2
    return run_job(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
