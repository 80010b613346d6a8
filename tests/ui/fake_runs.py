"""Run folders written by tests: fixed run.json, status.json and metrics.jsonl, no worker.

The files follow DESIGN.md's run folder contract, so the Runs pane reads them exactly as it
reads a real worker's output; tests append to them to watch the pane follow.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def fresh_workspace(path: Path, datasets: tuple[str, ...] | None = None) -> Path:
    """An empty workspace at ``path`` with the shipped datasets (or only ``datasets``) copied in."""
    shutil.rmtree(path, ignore_errors=True)
    (path / "checkpoints").mkdir(parents=True)
    if datasets is None:
        shutil.copytree(REPO / "datasets", path / "datasets")
    else:
        (path / "datasets").mkdir()
        for name in datasets:
            shutil.copy(REPO / "datasets" / name, path / "datasets" / name)
    return path


def train_record(step: int, method: str = "lora", offset: float = 0.0) -> dict:
    """A deterministic ``train`` record: a decaying loss with a little wobble."""
    loss = 2.5 * math.exp(-step / 25) + 0.6 + 0.05 * math.sin(step) + offset
    record = {"kind": "train", "step": step, "epoch": round(step / 20, 4), "time": 1_700_000_000.0 + step,
              "loss": loss, "ppl": math.exp(loss), "lr": 2e-4 * min(1.0, step / 5) * (1 - step / 200),
              "tokens": 800, "step_time": 0.5, "tokens_per_s": 1600.0 + 40 * math.cos(step)}
    if method == "dpo":
        margin = 0.02 * step
        record |= {"rewards_chosen": margin / 2, "rewards_rejected": -margin / 2, "rewards_margin": margin,
                   "rewards_accuracy": min(1.0, 0.5 + step / 60)}
    return record


def eval_record(step: int, offset: float = 0.0) -> dict:
    """A deterministic ``eval`` record."""
    loss = 2.5 * math.exp(-step / 25) + 0.7 + offset
    return {"kind": "eval", "step": step, "epoch": round(step / 20, 4), "time": 1_700_000_000.0 + step,
            "loss": loss, "ppl": math.exp(loss)}


def history(steps: int, method: str = "lora", eval_every: int = 10, offset: float = 0.0) -> list[dict]:
    """Records for steps 1..``steps`` with an eval every ``eval_every`` steps."""
    records = [{"kind": "event", "step": 0, "epoch": 0.0, "time": 1_700_000_000.0, "event": "started",
                "message": "started"}]
    for step in range(1, steps + 1):
        records.append(train_record(step, method, offset))
        if eval_every and step % eval_every == 0:
            records.append(eval_record(step, offset))
    return records


def append_records(run_dir: Path, records: list[dict]) -> None:
    """Append whole lines to the run's metrics.jsonl, as the worker does."""
    with open(run_dir / "metrics.jsonl", "a") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")


def write_status(run_dir: Path, **status) -> None:
    """Replace the run's status.json (fixed times unless given)."""
    values = {"state": "running", "pid": None, "step": 0, "total_steps": None, "epoch": 0.0, "message": "",
              "started": 1_700_000_000.0, "updated": 1_700_000_100.0}
    (run_dir / "status.json").write_text(json.dumps(values | status))


def make_run(home: Path, name: str, *, method: str = "lora", state: str = "running", steps: int = 0,
             total: int | None = 50, pid: int | None = None, eta_s: float | None = None, created: float = 0.0,
             dataset: str = "seed_instructions.jsonl", eval_every: int = 10, offset: float = 0.0,
             message: str = "") -> Path:
    """A run folder with ``steps`` steps of history, in ``state``."""
    run_dir = home / "checkpoints" / name
    run_dir.mkdir(parents=True)
    config = {"name": name, "model": "default", "model_path": "/models/SmolLM2-135M-Instruct",
              "dataset": str(home / "datasets" / dataset), "method": method, "template": "chat",
              "created": 1_700_000_000.0 + created}
    (run_dir / "run.json").write_text(json.dumps(config))
    status = {"state": state, "pid": pid, "step": steps, "total_steps": total, "message": message}
    if eta_s is not None:
        status["eta_s"] = eta_s
    write_status(run_dir, **status)
    append_records(run_dir, history(steps, method, eval_every, offset))
    return run_dir


def app_on(mode: str, home: Path):
    """The dashboard opened straight on pane ``mode`` (the Datasets pane, and its tokenizer, never load)."""
    import tui_ft.ui.app
    from tui_ft.ui.app import TuiFtApp

    class OnePaneApp(TuiFtApp):
        DEFAULT_MODE = mode
        CSS_PATH = Path(tui_ft.ui.app.__file__).with_name("app.tcss")  # relative paths resolve from here

    return OnePaneApp(home)


async def polled(pilot):
    """Poll the Runs pane now and wait until it has shown the result (and any follow-up poll)."""
    from tui_ft.ui.screens.runs import RunsScreen

    screen = pilot.app.screen
    assert isinstance(screen, RunsScreen)
    screen.poll_runs()
    for _ in range(50):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if not screen._polling:
            break
    return screen
