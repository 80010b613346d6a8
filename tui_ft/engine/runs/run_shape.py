"""What a run will do, before it starts: examples, held-out examples, steps, and a time estimate.

Counted with the trainer's own split and step arithmetic (:mod:`tui_ft.engine.data.splits`), so
the Train form's summary line (:func:`tui_ft.views.run_summary.shape_line`) is the run that starts. Tokens are estimated without a tokenizer
(the dashboard loads none), as the memory plan does; the time comes from this workspace's own
earlier runs of the same model and method on the same device, the one speed measured on this
machine, rather than from a formula that would be wrong by the machine's factor.
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from pathlib import Path

import orjson

from tui_ft.engine.data.splits import split_eval, steps_per_epoch
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.folder import METRICS_FILE
from tui_ft.engine.runs.memory_plan import estimated_tokens

MEASURED_STEPS = 50  # the last steps of an earlier run whose speed the estimate uses


@dataclass(frozen=True)
class Speed:
    """An earlier run's training speed: median tokens a second over its last steps."""

    run: str
    tokens_per_s: float


@dataclass(frozen=True)
class RunShape:
    """The run a config makes of its dataset."""

    examples: int  # records in the training file
    trained: int  # examples trained on (the rest are held out)
    held_out: int  # examples evaluated on: split off, or the eval file's
    held_from_file: bool  # the held-out examples are a file of their own
    steps_per_epoch: int
    total_steps: int
    tokens: int  # tokens trained on over the whole run, estimated
    speed: Speed | None = None

    @property
    def seconds(self) -> float | None:
        return self.tokens / self.speed.tokens_per_s if self.speed and self.speed.tokens_per_s > 0 else None


def run_shape(config: TrainConfig, dataset: Path, eval_dataset: Path | None = None, home: Path | None = None) -> RunShape:
    """The shape of the run ``config`` makes of ``dataset``; with ``home``, timed by an earlier run."""
    tokens = _example_tokens(*_file_key(dataset), config.method, config.max_length)
    if eval_dataset is not None:
        train_idx, held = list(range(len(tokens))), len(_example_tokens(*_file_key(eval_dataset), config.method,
                                                                        config.max_length))
    else:
        train_idx, eval_idx = split_eval(len(tokens), config.eval_split, config.seed)
        held = len(eval_idx)
    per_epoch = steps_per_epoch(len(train_idx), config.batch_size, config.grad_accum)
    total = config.max_steps or int(config.epochs * per_epoch)
    epoch_tokens = sum(tokens[index] for index in train_idx)
    run_tokens = round(epoch_tokens * total / per_epoch) if per_epoch else 0
    speed = earlier_speed(home, config) if home is not None else None
    return RunShape(len(tokens), len(train_idx), held, eval_dataset is not None, per_epoch, total, run_tokens, speed)


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = Path(path).stat()
    return str(path), stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=16)
def _example_tokens(path: str, _size: int, _mtime: int, method: str, max_length: int) -> tuple[int, ...]:
    """Each example's estimated tokens as it trains (a pair's chosen and rejected replies both)."""
    from tui_ft.engine.data import load_dataset, preference_examples, sft_examples

    data = load_dataset(path)
    if data.format == "preference":
        return tuple(sum(min(max_length, estimated_tokens(example)) for example in preference_examples(pair))
                     for pair in data.records)
    return tuple(min(max_length, estimated_tokens(example)) for example in sft_examples(data))


def earlier_speed(home: Path, config: TrainConfig) -> Speed | None:
    """The most recent earlier run's speed with the same model, method and device, if any."""
    from tui_ft.engine.runs.lifecycle import list_runs

    for info in sorted(list_runs(home), key=lambda run: run.started or 0, reverse=True):
        if info.method != config.method or not info.started:
            continue
        raw = _read_json(info.path / "run.json")  # the model as it was asked for: a ref, a folder or a Hub id
        if raw.get("model") != config.model or (raw.get("device") or "auto") != config.device:
            continue
        speeds = _last_speeds(info.path / METRICS_FILE)
        if speeds:
            return Speed(info.name, statistics.median(speeds))
    return None


def _read_json(path: Path) -> dict:
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _last_speeds(metrics: Path) -> list[float]:
    """tokens/s of the last :data:`MEASURED_STEPS` train records, the first step left out (it warms up)."""
    from tui_ft.engine.files import read_tail

    speeds = []
    for line in read_tail(metrics, 64 * 1024).splitlines():  # bytes: orjson reads them as they are
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # the tail's first line is cut, or the last one is being written
        if not isinstance(record, dict):
            continue
        value = record.get("tokens_per_s")
        step = record.get("step")
        if record.get("kind") == "train" and isinstance(step, int) and step > 1 and isinstance(value, (int, float)) and value > 0:
            speeds.append(float(value))
    return speeds[-MEASURED_STEPS:]
