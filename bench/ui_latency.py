"""The dashboard under load: key press to repaint, first paint, and what tailing metrics costs.

Run: ``.venv/bin/python bench/ui_latency.py [--presses 50] [--model default|tiny|PATH]``.

A real LoRA run trains in a detached worker on this machine the whole time (the default
model; both cores busy), next to three finished runs with 3,000-step histories.

- **key → repaint**: the dashboard runs headless under Textual's pilot (``App.run_test``);
  each key goes in through the driver, as a terminal's input thread sends it, and the
  latency is the time until the compositor hands a frame showing the key's effect (pane,
  focus, table cursor or plot changed) to the display, which then serialises it to terminal
  escape codes as it would for a real terminal. Keys switch panes (1, 2, 3, 5), move in the
  Runs and Datasets tables, flip the Runs plots and log, open and close the help screen,
  about ten a second. The Chat pane is left out: it loads a model for chatting.
  ``--no-training`` gives the same figures on an idle machine, for comparison.
- **first paint**: a fresh ``python`` process that imports the dashboard and runs it
  headless; the time from before the process starts to its first frame.
- **tailing**: the Runs pane's poll, done here directly once a second: the status of every
  run (``run_rows``) and the new metrics of the live run (``RunHistory.update``), as CPU
  time of this thread, against the live run's training step time.

Targets (issue 6): p95 key → repaint < 50 ms, first paint < 1 s, tailing < 1 % of a step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe_machine, load_average, load_line  # noqa: E402

# Keys, and the character a terminal sends with each (None for keys without one).
KEYS = {"1": "1", "2": "2", "3": "3", "5": "5", "p": "p", "l": "l", "up": None, "down": None,
        "question_mark": "?", "escape": "\x1b"}
# Runs: rows (the live run, the newest, is the last), plots, the log; Datasets: rows; Train: the
# help screen over the form; Benchmark. A round ends where it started, so rounds repeat.
ROUND = ["3", "up", "up", "down", "p", "p", "l", "l", "1", "down", "down", "up", "2", "question_mark", "escape", "5"]
HISTORY_STEPS = 3000
PAINT_WAIT = 5.0  # seconds to wait for a frame that shows a key's effect (a slow key counts, not dropped)
FIRST_PAINT_CODE = """
import sys, time
from pathlib import Path
started = float(sys.argv[1])
import tui_ft.ui.app
from tui_ft.ui.app import TuiFtApp

class FirstPaint(TuiFtApp):
    CSS_PATH = str(Path(tui_ft.ui.app.__file__).with_name("app.tcss"))  # relative paths follow the subclass
    painted = None

    def _display(self, screen, renderable):
        super()._display(screen, renderable)
        if renderable is not None and self.painted is None:
            renderable.render_segments(self.console)  # what a terminal would be sent
            self.painted = time.time() - started
            self.exit()

app = FirstPaint(Path(sys.argv[2]))
app.run(headless=True, size=(120, 40))
print(app.painted)
"""


# ----- the workspace --------------------------------------------------------------------------


def finished_run(home: Path, name: str, steps: int, offset: float) -> None:
    """A finished run folder with ``steps`` steps of history (the format the worker writes)."""
    run_dir = home / "checkpoints" / name
    run_dir.mkdir(parents=True)
    config = {"name": name, "model": "default", "model_path": "/nowhere", "method": "lora", "template": "alpaca",
              "dataset": str(home / "datasets" / "demo_veloria.jsonl"), "created": 1_700_000_000.0 + offset}
    (run_dir / "run.json").write_text(json.dumps(config))
    (run_dir / "status.json").write_text(json.dumps({"state": "finished", "pid": None, "step": steps,
                                                     "total_steps": steps, "epoch": 3.0, "message": "finished"}))
    lines = []
    for step in range(1, steps + 1):
        loss = 2.5 * math.exp(-step / 400) + 0.6 + 0.05 * math.sin(step) + offset / 10
        lines.append({"kind": "train", "step": step, "epoch": step / 1000, "time": 1_700_000_000.0 + step,
                      "loss": loss, "ppl": math.exp(loss), "lr": 2e-4, "grad_norm": 0.5, "tokens": 900,
                      "padding": 40, "step_time": 0.9, "tokens_per_s": 1000.0, "trained_tokens": 400})
        if step % 100 == 0:
            lines.append({"kind": "eval", "step": step, "epoch": step / 1000, "time": 1_700_000_000.0 + step,
                          "loss": loss + 0.1, "ppl": math.exp(loss + 0.1)})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def start_live_run(home: Path, model: str) -> Path:
    """Create and launch a LoRA run that trains for longer than this benchmark lasts."""
    from tui_ft.engine.runs import create_run, launch_run
    from tui_ft.engine.runs.config import TrainConfig

    config = TrainConfig(model=model, dataset="datasets/demo_veloria.jsonl", method="lora", max_steps=2000,
                         batch_size=8, eval_split=0.0, save_every=0, name="live")
    run_dir = create_run(config, home)
    launch_run(run_dir)
    return run_dir


def step_times(run_dir: Path) -> list[float]:
    from tui_ft.engine.runs import read_metrics

    return [r["step_time"] for r in read_metrics(run_dir) if r.get("kind") == "train"]


def wait_for_steps(run_dir: Path, count: int, timeout: float) -> None:
    """Wait until the live run has logged ``count`` steps (the machine is then under load)."""
    deadline = time.time() + timeout
    while len(step_times(run_dir)) < count:
        if time.time() > deadline:
            raise SystemExit(f"the live run logged no step in {timeout:.0f} s; see {run_dir / 'worker.log'}")
        time.sleep(0.5)


# ----- measurements -------------------------------------------------------------------------


def first_paints(home: Path, repeats: int) -> list[float]:
    """Seconds from process start to the first frame, for ``repeats`` fresh processes."""
    times = []
    for _ in range(repeats):
        started = time.time()
        output = subprocess.run([sys.executable, "-c", FIRST_PAINT_CODE, str(started), str(home)], cwd=ROOT,
                                capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        lines = output.stdout.strip().splitlines()
        if output.returncode != 0 or not lines:
            raise SystemExit(f"the first-paint process failed:\n{output.stderr[-2000:]}")
        times.append(float(lines[-1]))
    return times


by_pane: dict[str, list[float]] = {}  # latencies by the pane a key left the screen on


def fingerprint(app) -> tuple:
    """What a key may change that a frame shows: pane, focus, cursor, plot, log view."""
    focused = app.focused
    screen = app.screen
    return (app.current_mode, id(screen), id(focused), getattr(focused, "cursor_coordinate", None),
            getattr(screen, "plot_index", None), getattr(screen, "show_log", None))


async def key_latencies(home: Path, presses: int, verbose: bool) -> tuple[list[float], list[str], list[float]]:
    """Latencies (s) of the keys that changed the screen, the keys that did not, and the UI's poll-apply times."""
    from textual import events

    import tui_ft.ui.app
    from tui_ft.ui.app import TuiFtApp
    from tui_ft.ui.screens.runs import RunsScreen

    waiting: dict = {}  # the key being timed: the state before it, its start, and the event to set
    applied: list[float] = []

    class TimedApp(TuiFtApp):
        CSS_PATH = str(Path(tui_ft.ui.app.__file__).with_name("app.tcss"))  # relative paths follow the subclass

        def _display(self, screen, renderable):
            super()._display(screen, renderable)
            if renderable is None:
                return
            renderable.render_segments(self.console)  # the escape codes a terminal would be sent
            if waiting and "latency" not in waiting and fingerprint(self) != waiting["before"]:
                waiting["latency"] = time.perf_counter() - waiting["started"]
                waiting["painted"].set()

    def timed_show_poll(screen, message):  # the UI thread's share of a poll: table, plots, info
        started = time.thread_time()
        show_poll(screen, message)
        applied.append(time.thread_time() - started)

    # @on handlers are registered when the class is made: swap the function in that registry.
    handlers = RunsScreen.__dict__["_decorated_handlers"][RunsScreen.RunsPolled]
    show_poll = RunsScreen.show_poll
    handlers[:] = [(timed_show_poll if f is show_poll else f, sel) for f, sel in handlers]
    latencies, unchanged = [], []
    by_pane.clear()
    try:
        app = TimedApp(home)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(1.0)  # the first pane settles
            for key in islice(cycle(ROUND), presses):
                waiting.clear()
                waiting.update(before=fingerprint(app), painted=asyncio.Event(), started=time.perf_counter())
                event = events.Key(key, KEYS[key])
                event.set_sender(app)
                app._driver.send_message(event)  # what a terminal driver's input thread does
                try:
                    await asyncio.wait_for(waiting["painted"].wait(), PAINT_WAIT)
                    latencies.append(waiting["latency"])
                except asyncio.TimeoutError:
                    unchanged.append(f"{key} on {app.current_mode}")
                else:
                    by_pane.setdefault(app.current_mode, []).append(waiting["latency"])
                if verbose:
                    shown = f"{waiting['latency'] * 1000:7.1f} ms" if "latency" in waiting else "no change"
                    print(f"  {key:>5} -> {app.current_mode:<10} {shown}")
                waiting.clear()
                await asyncio.sleep(0.1)  # about ten keys a second
    finally:
        handlers[:] = [(show_poll if f is timed_show_poll else f, sel) for f, sel in handlers]
    return latencies, unchanged, applied


def tail_costs(home: Path, run_dir: Path, polls: int, interval: float) -> tuple[float, list[float]]:
    """CPU seconds of the first full read of a long history, and of each poll of the live run."""
    from tui_ft.views.run_monitor import RunHistory, run_rows

    started = time.thread_time()
    RunHistory(home / "checkpoints" / "history-1").update()
    first = time.thread_time() - started
    history = RunHistory(run_dir)
    history.update()
    costs = []
    for _ in range(polls):
        time.sleep(interval)
        started = time.thread_time()
        run_rows(home)
        history.update()
        costs.append(time.thread_time() - started)
    return first, costs


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


# ----- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=50, help="keys to time (default 50)")
    parser.add_argument("--first-paints", type=int, default=5, help="fresh processes to time (default 5)")
    parser.add_argument("--polls", type=int, default=15, help="tail polls to time, one a second (default 15)")
    parser.add_argument("--verbose", action="store_true", help="print every key's latency")
    parser.add_argument("--no-training", action="store_true", help="no live run: the idle machine's figures")
    parser.add_argument("--model", default="default", help="the live run's model: default, or a model folder")
    args = parser.parse_args(argv)

    print(describe_machine())
    print(load_line("start"))
    home = Path(tempfile.mkdtemp(prefix="tui_ft_ui_bench_"))
    run_dir = None
    try:
        shutil.copytree(ROOT / "datasets", home / "datasets")
        for index in range(3):
            finished_run(home, f"history-{index + 1}", HISTORY_STEPS, float(index))
        if args.no_training:
            print("no run training (--no-training)")
        else:
            run_dir = start_live_run(home, args.model)
            wait_for_steps(run_dir, 1, timeout=300)
            print(f"live LoRA run training ({args.model} model, batch 8); load {load_average():.2f}")

        paints = first_paints(home, args.first_paints)
        latencies, unchanged, applied = asyncio.run(key_latencies(home, args.presses, args.verbose))
        if run_dir is not None:
            first_read, polls = tail_costs(home, run_dir, args.polls, 1.0)
            steps = step_times(run_dir)
    finally:
        if run_dir is not None:
            from tui_ft.engine.runs import read_status, stop_run

            stop_run(run_dir)
            deadline = time.time() + 60
            while read_status(run_dir).get("state") in ("running", "stopping") and time.time() < deadline:
                time.sleep(0.5)
        shutil.rmtree(home, ignore_errors=True)

    print(f"\nkey -> repaint ({len(latencies)} keys; {len(unchanged)} changed nothing: {', '.join(unchanged) or '-'}): "
          f"p50 {statistics.median(latencies) * 1000:.1f} ms, p95 {percentile(latencies, 0.95) * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms  (target p95 < 50 ms)")
    for pane, values in sorted(by_pane.items()):
        print(f"  {pane:<10} {len(values):>3} keys: p50 {statistics.median(values) * 1000:6.1f} ms, "
              f"max {max(values) * 1000:6.1f} ms")
    print(f"first paint ({len(paints)} fresh processes): median {statistics.median(paints):.2f} s, "
          f"max {max(paints):.2f} s  (target < 1 s)")
    if run_dir is not None:
        step, poll = statistics.median(steps), statistics.median(polls)
        apply = statistics.median(applied) if applied else 0.0
        per_step = (poll + apply) * step / 1.0  # one poll a second while the Runs pane is shown
        print(f"tailing: {poll * 1000:.2f} ms CPU a poll (p95 {percentile(polls, 0.95) * 1000:.2f} ms: status of 4 runs"
              f" + new metrics of the live run); first read of a {HISTORY_STEPS}-step history {first_read * 1000:.0f} ms")
        print(f"  applying a poll in the UI (table, plots, info): median {apply * 1000:.1f} ms over {len(applied)} polls")
        print(f"  training step {step:.2f} s (median of {len(steps)}); a poll a second, read + apply = "
              f"{per_step * 1000:.1f} ms a step = {100 * per_step / step:.2f} % of the step  (target < 1 %)")
    print(load_line("end"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
