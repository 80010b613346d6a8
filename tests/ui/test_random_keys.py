"""Seeded random keys over every pane, at two sizes: no key sequence may raise or close the dashboard.

The workspace has runs in every state (with metrics), stored benchmark results and checkpoints,
and two datasets. Whatever would start real work is replaced by the fakes the other UI tests use:
a chat model that answers with fixed pieces (chat_fakes), evaluation jobs that are empty folders,
a run that is a folder written by fake_runs, a tokenizer that counts words. Keys that quit (q,
ctrl+q, ctrl+c) and the command palette (its Quit and screenshot commands) are left out.

Each pane gets its turn (the app switches to it, then keys go wherever they lead, other panes
included): its own keys, navigation, typing and pane digits, drawn from a fixed seed. A failure
names the seed, the size and the last keys pressed, so it can be replayed.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from pathlib import Path

import pytest
from textual import events
from textual.worker import Worker, WorkerState

from tui_ft.engine.data import sft_examples
from tui_ft.engine.data.stats import DatasetStats
from tui_ft.engine.data.tokenizer_process import RenderedExample, TokenizerInfo
from tui_ft.engine.generation import chat_model

import fake_runs
from bench_workspace import BenchApp, fill_workspace
from chat_fakes import FakeLoader
from polling import settle_workers

SEED = 20_260_023
SIZES = [(80, 24), (120, 36)]
KEYS_PER_PANE = 200  # 5 panes x 2 sizes: 2,000 keys, about 45 s of CPU on the 2-core machine
BACK_EVERY = 25  # keys after which a pane's turn brings it back, if the keys led elsewhere
PANES = ("datasets", "train", "runs", "chat", "benchmark")

# Navigation everywhere; each pane's own keys; typing; now and then a key that leaves the pane.
NAVIGATION = ["up", "down", "left", "right", "home", "end", "pageup", "pagedown", "tab", "shift+tab", "enter", "space",
              "escape", "backspace"]
PANE_KEYS = {
    "datasets": ["n", "p", "t", "a", "r", "right", "left"],
    "train": ["ctrl+s", "ctrl+r", "ctrl+o"],
    "runs": ["s", "r", "e", "l", "p", "space"],
    "chat": ["ctrl+b", "ctrl+r", "ctrl+n", "ctrl+s", "ctrl+e", "ctrl+l"],
    "benchmark": ["e", "d", "b", "o", "x", "s", "r", "space"],
}
TYPING = ["a", "b", "x", "z", "0", "7", "minus", "full_stop"]
ELSEWHERE = ["1", "2", "3", "4", "5", "question_mark", "f1"]  # panes and help: about one key in 70
CHARACTERS = {"space": " ", "minus": "-", "full_stop": ".", "question_mark": "?"}


def draw_key(rng: random.Random, pane: str) -> str:
    """A key for ``pane``: navigation 60%, the pane's keys 25%, typing 13.5%, elsewhere 1.5%."""
    roll = rng.random()
    keys = ELSEWHERE if roll < 0.015 else TYPING if roll < 0.15 else PANE_KEYS[pane] if roll < 0.4 else NAVIGATION
    return rng.choice(keys)


def key_event(key: str) -> events.Key:
    """The event a terminal sends for ``key`` (a printable key carries its character)."""
    return events.Key(key, CHARACTERS.get(key, key if len(key) == 1 else None))


class WordTokenizer:
    """Stands in for the tokenizer's child process: a token is a word; replies are trained."""

    def info(self) -> TokenizerInfo:
        return TokenizerInfo(default_template="chat", has_chat_template=True)

    def stats(self, dataset, template: str, max_length: int) -> DatasetStats:
        lengths = sorted(sum(len(m["content"].split()) for m in e.messages) for e in sft_examples(dataset)) or [0]
        return DatasetStats(len(lengths), lengths[0], lengths[len(lengths) // 2], lengths[-1], sum(lengths),
                            sum(n > max_length for n in lengths), max_length, [(lengths[0], lengths[-1], len(lengths))])

    def render(self, example, template: str, max_length: int, train_on_prompt: bool) -> RenderedExample:
        segments = [(m["content"] + "\n", train_on_prompt or m["role"] == "assistant") for m in example.messages]
        tokens = sum(len(text.split()) for text, _ in segments)
        return RenderedExample(tokens, sum(len(text.split()) for text, trained in segments if trained), tokens, segments)


def make_workspace(home: Path) -> Path:
    """Benchmark results and checkpoints (bench_workspace), and runs in every state with metrics (fake_runs)."""
    fill_workspace(home)
    for index, (state, method) in enumerate([("running", "lora"), ("finished", "lora"), ("stopped", "full"),
                                             ("failed", "dpo"), ("died", "lora"), ("queued", "freeze")]):
        steps = 0 if state == "queued" else 20 + 10 * index
        fake_runs.make_run(home, f"{state}-{method}", state=state, method=method, steps=steps, total=80, created=index,
                           dataset="seed_instructions.jsonl", message=f"{state} at step {steps}")
    return home


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    """Nothing the keys start does real work: no model, no worker, no job, no tokenizer process."""
    import tui_ft.engine.runs
    import tui_ft.ui.screens.benchmark as benchmark_pane
    import tui_ft.ui.screens.datasets as datasets_pane
    import tui_ft.ui.screens.runs as runs_pane

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    monkeypatch.setattr(chat_model, "load_chat_model", FakeLoader())
    monkeypatch.setattr(datasets_pane, "tokenizer_process", lambda path: WordTokenizer())
    jobs = []

    def start_eval_job(home, refs, **options):
        jobs.append(refs)
        job_dir = Path(home) / "bench" / "jobs" / f"fake-{len(jobs)}"
        job_dir.mkdir(parents=True)
        return job_dir

    monkeypatch.setattr(benchmark_pane, "start_eval_job", start_eval_job)
    monkeypatch.setattr(benchmark_pane, "stop_eval_job", lambda job_dir: True)
    launched = []

    def create_run(config, home):
        launched.append(config)
        return fake_runs.make_run(Path(home), config.name or f"keys-{len(launched)}", state="queued", method=config.method)

    monkeypatch.setattr(tui_ft.engine.runs, "validate_config", lambda config, home: [])
    monkeypatch.setattr(tui_ft.engine.runs, "create_run", create_run)
    monkeypatch.setattr(tui_ft.engine.runs, "launch_run", lambda run_dir: 999_999)

    def resume_run(run_dir):
        fake_runs.write_status(Path(run_dir), state="running", message="resumed by a key")
        return 999_999

    monkeypatch.setattr(runs_pane, "resume_run", resume_run)
    monkeypatch.setattr(runs_pane, "export_merged_cli", lambda home, name, out: "")
    monkeypatch.setattr(runs_pane, "export_cli", lambda *args, **kwargs: "")  # GGUF and Ollama go through it


@pytest.fixture
def worker_errors(monkeypatch) -> list[BaseException]:
    """Errors of the app's workers: a worker's exception is a bug too, though the pane only notifies it."""
    errors = []
    init = Worker.StateChanged.__init__

    def record(self, worker, state):
        if state == WorkerState.ERROR:
            errors.append(worker.error)
        init(self, worker, state)

    monkeypatch.setattr(Worker.StateChanged, "__init__", record)
    return errors


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
async def test_random_keys_never_crash_the_dashboard(size, tmp_path, fakes, worker_errors):
    home = make_workspace(tmp_path / "home")
    rng = random.Random(f"{SEED}-{size}")
    trail: deque[str] = deque(maxlen=30)
    pressed: Counter[str] = Counter()
    app = BenchApp(home)  # opens on Benchmark: the Datasets pane's first visit comes in its turn
    exited_early = False

    def replay() -> str:
        return f"seed {SEED}, size {size[0]}x{size[1]}, the last keys (pane:key): {' '.join(trail)}"

    try:
        async with app.run_test(size=size) as pilot:
            for pane in PANES:
                await app.switch_mode(pane)
                await pilot.pause()
                for count in range(1, KEYS_PER_PANE + 1):
                    if count % BACK_EVERY == 0 and app.current_mode != pane:
                        await app.switch_mode(pane)  # Train's ctrl+s goes to Runs; a digit anywhere
                    shown = app.current_mode
                    key = draw_key(rng, shown)
                    trail.append(f"{shown}:{key}")
                    pressed[shown] += 1
                    # As the terminal driver does; then until the screen has handled it. (Pilot.press
                    # also waits for the process to idle, 40 ms a key at least: minutes for this test.)
                    app.post_message(key_event(key))
                    await pilot.pause(0)
                    if not app.is_running:
                        exited_early = True
                        break
                if exited_early:
                    break
            if not exited_early:
                await settle_workers(pilot, rounds=1)
    except Exception as error:  # the app's own exception, re-raised by run_test
        raise AssertionError(f"{type(error).__name__}: {error}\n{replay()}") from error
    assert not exited_early, f"the dashboard exited (return code {app.return_code})\n{replay()}"
    assert not worker_errors, f"a worker failed: {worker_errors[0]!r}\n{replay()}"
    for pane in PANES:  # every pane had keys, not only the first one the keys wandered to
        assert pressed[pane] >= KEYS_PER_PANE // 3, (pane, dict(pressed))
