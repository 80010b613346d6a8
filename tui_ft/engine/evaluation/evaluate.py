"""Evaluate models: resolve and load them, score benchmarks and perplexity, store and reuse results.

This is the module the CLI (``tui-ft eval``) and the Benchmark pane call (through the package,
:mod:`tui_ft.engine.evaluation`). The scoring itself is in :mod:`.scoring`, the result files in
:mod:`.store`, and the detached jobs in :mod:`.jobs`.

A result record (the ``--json`` shape, also what is stored) has ``kind`` (``benchmark``,
``perplexity`` or ``reward``), ``model`` (the reference as given), ``checkpoint`` (``None`` for
the final weights, or ``"step-N"``), ``template``, and either ``benchmark``, ``scorer``,
``settings``, ``score`` (0..1), ``n``, ``items`` (each ``prompt``, ``expected``, ``reply``,
``correct``, ``line``), or ``dataset``, ``perplexity``, ``nll``, ``tokens``, ``max_length``, or
(a reward model's judgement, :mod:`.reward_judge`) ``prompts``, ``reward_model`` (its identity),
``reward_model_name``, ``settings``, ``reward`` (the mean), ``n``, ``items`` (each ``prompt``,
``reply``, ``reward``, ``line``); plus ``created``, ``seconds``, ``key``, ``fingerprint`` and
``cached`` (served from the store).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tui_ft.engine.data import benchmark_items, load_dataset, prompt_items, sft_examples
from tui_ft.engine.data.readers import DatasetError, Problem
from tui_ft.engine.evaluation import store
from tui_ft.engine.evaluation.model_session import ModelSession
from tui_ft.engine.evaluation.reward_judge import RewardJudge, run_reward_eval
from tui_ft.engine.evaluation.scoring import (
    DEFAULT_MAX_NEW_TOKENS,
    SCORERS,
    EvaluationStopped,
    perplexity,
    run_benchmark,
)
from tui_ft.engine.files import write_json_atomic

Progress = Callable[[int, int], None]  # (items done, total)


@dataclass
class EvalTask:
    """A validated benchmark or perplexity dataset, ready to score.

    Attributes:
        kind: ``benchmark``, ``perplexity`` or ``reward``.
        path: The file.
        display: The path as results name it (relative to the workspace when inside it).
        records: Benchmark items, conversations for perplexity, or prompts for a reward model to judge.
        sha256: The file's content hash (results of an edited file are recomputed).
    """

    kind: str
    path: Path
    display: str
    records: list
    sha256: str


def resolve_data_path(path: str | Path, home: Path) -> Path:
    """Find a dataset file as training does: as given, else in the workspace, else in its ``datasets/``.

    The path keeps the user's spelling, so problems are reported as ``their/path:line``.
    """
    from tui_ft.engine.runs.config_checks import find_dataset

    return find_dataset(str(path), Path(home))


def display_path(path: Path, home: Path) -> str:
    """``path`` relative to the workspace when it is inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path(home).resolve()))
    except ValueError:
        return str(path.resolve())


def load_task(kind: str, path: str | Path, home: Path) -> EvalTask:
    """Read and validate a benchmark (``kind="benchmark"``), a perplexity dataset, or prompts (``reward``).

    Raises:
        DatasetError: The file is missing or invalid (every problem, with its line).
    """
    resolved = resolve_data_path(path, home)
    dataset = load_dataset(resolved)
    if kind == "benchmark":
        records = benchmark_items(dataset)
    elif kind == "reward":
        records = prompt_items(dataset)
        if not records:
            raise DatasetError([Problem(str(resolved), 1, f"a {dataset.format} file has no prompts to answer")])
    else:
        records = sft_examples(dataset)
        if not records:
            raise DatasetError([Problem(str(resolved), 1, f"a {dataset.format} file has no replies to score")])
    return EvalTask(kind, resolved, display_path(resolved, home), records, store.file_sha256(resolved))


def default_settings(max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS):
    """Greedy generation with ``max_new_tokens``: the benchmark default."""
    from tui_ft.engine.generation import GenerationSettings

    return GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0)


def default_scorer(items) -> str:
    """The scorer a benchmark gets when none is asked for: ``choice`` when every item has choices, else ``contains``."""
    return "choice" if items and all(item.choices for item in items) else "contains"


def pick_scorer(task: EvalTask, scorer: str | None) -> str:
    """``scorer``, checked against the items; by default ``choice`` when every item has choices.

    Raises:
        DatasetError: ``choice`` was asked for items without choices (with their lines).
    """
    if scorer is None:
        return default_scorer(task.records)
    if scorer not in SCORERS:
        raise ValueError(f"unknown scorer {scorer!r} (expected one of {', '.join(SCORERS)})")
    if scorer == "choice":
        missing = [Problem(str(task.path), item.line, "no 'choices' for the choice scorer") for item in task.records if not item.choices]
        if missing:
            raise DatasetError(missing)
    return scorer


def evaluate_task(session: ModelSession, task: EvalTask, template: str | None = None, settings=None,
                  scorer: str | None = None, max_length: int | None = None, batch_size: int = 8,
                  use_cache: bool = True, progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None, judge: RewardJudge | None = None) -> dict:
    """Score one model on one task, reusing a stored result when one matches.

    The model's weights load only when something must be computed. A ``reward`` task needs
    ``judge``, the reward model that scores the replies.
    """
    template = session.template(template)
    identity = {"kind": task.kind, "model": session.identity, "checkpoint": session.checkpoint, "template": template}
    if task.kind == "benchmark":
        scorer = pick_scorer(task, scorer)
        settings = None if scorer == "choice" else (settings or default_settings())
        identity |= {"benchmark": task.display, "scorer": scorer,
                     "settings": dataclasses.asdict(settings) if settings is not None else None}
    elif task.kind == "reward":
        if judge is None:
            raise ValueError("a reward evaluation needs a reward model")
        settings = settings or default_settings()
        identity |= {"prompts": task.display, "reward_model": judge.identity, "settings": dataclasses.asdict(settings)}
    else:
        identity |= {"dataset": task.display, "max_length": max_length}
    fingerprint = {"sha256": task.sha256, "weights": session.weights_stamp()}
    if judge is not None and task.kind == "reward":  # a reward model trained again judges again
        fingerprint["reward_weights"] = judge.weights_stamp()
    folder = session.results_dir
    path = store.result_path(folder, identity)
    total = len(task.records)
    if use_cache and (stored := store.lookup(path, fingerprint)) is not None:
        if progress:
            progress(total, total)
        return stored | {"model": session.ref, "cached": True}
    started = time.perf_counter()
    model, tokenizer = session.load()
    if task.kind == "benchmark":
        result = run_benchmark(model, tokenizer, task.records, template, settings, scorer, progress, should_stop)
        values = result.to_dict()
    elif task.kind == "reward":
        result = run_reward_eval(model, tokenizer, task.records, template, judge, settings, progress, should_stop)
        values = result.to_dict() | {"reward_model_name": judge.name}
    else:
        if should_stop and should_stop():
            raise EvaluationStopped()
        try:
            measured = perplexity(model, tokenizer, task.records, template, batch_size, max_length, progress)
        except ValueError as error:
            raise DatasetError([Problem(str(task.path), 0, str(error))]) from None
        values = dataclasses.asdict(measured)
    record = identity | values | {
        "model": session.ref, "model_id": session.identity, "created": store.now_iso(),
        "seconds": round(time.perf_counter() - started, 3), "key": store.result_key(identity), "fingerprint": fingerprint,
    }
    write_json_atomic(path, record, parents=True)
    return record | {"cached": False}


def evaluate(ref: str, home: Path, benchmark: str | Path | None = None, perplexity_path: str | Path | None = None,
             checkpoint: str | None = None, template: str | None = None, settings=None, use_cache: bool = True,
             progress: Progress | None = None, *, scorer: str | None = None, max_length: int | None = None,
             batch_size: int = 8, should_stop: Callable[[], bool] | None = None) -> dict:
    """Evaluate one model on one benchmark or one perplexity dataset; the result is stored.

    Args:
        ref: A model reference (``default``, a folder, a cached model, a run name).
        home: The workspace.
        benchmark: A benchmark file (give this or ``perplexity_path``).
        perplexity_path: A dataset whose replies are scored for perplexity.
        checkpoint: ``"step-N"`` for an intermediate checkpoint of a run; ``None``: final weights.
        template: ``alpaca`` or ``chat``; default: the run's template, else the model's own.
        settings: Generation settings for benchmarks; default greedy, 64 new tokens.
        use_cache: Serve a matching stored result without loading the model.
        progress: Called with ``(items done, total)``.
        scorer: ``contains``, ``exact`` or ``choice``; default ``choice`` when every item has
            choices, else ``contains``.
        max_length: Truncate perplexity examples to this many tokens.
        batch_size: Sequences per forward pass (perplexity and choices).
        should_stop: Polled between items; true stops with :class:`EvaluationStopped`.

    Returns:
        The result record (see the module docstring).

    Raises:
        ModelError: The model or checkpoint cannot be resolved.
        DatasetError: The file is missing or invalid.
        ValueError: Neither or both of ``benchmark`` and ``perplexity_path``.
    """
    if (benchmark is None) == (perplexity_path is None):
        raise ValueError("give exactly one of benchmark and perplexity_path")
    task = load_task("benchmark", benchmark, home) if benchmark is not None else load_task("perplexity", perplexity_path, home)
    session = ModelSession(ref, Path(home), checkpoint)
    return evaluate_task(session, task, template, settings, scorer, max_length, batch_size, use_cache, progress, should_stop)


def evaluate_many(refs: Sequence[str], home: Path, benchmarks: Sequence[str | Path] = (),
                  perplexity_paths: Sequence[str | Path] = (), checkpoint: str | None = None,
                  template: str | None = None, settings=None, scorer: str | None = None,
                  max_length: int | None = None, use_cache: bool = True, progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  on_result: Callable[[dict], None] | None = None, *, reward_prompts: Sequence[str | Path] = (),
                  reward: str | None = None) -> list[dict]:
    """Evaluate every model on every benchmark and dataset, loading each model at most once.

    Every file and model is checked before anything is computed, so a typo fails at once.
    ``progress`` counts items over the whole plan; ``on_result`` receives each record as it
    is made. ``reward_prompts`` are prompt sheets whose replies the reward run ``reward``
    scores. Other arguments are as for :func:`evaluate`.
    """
    tasks, judge = check_plan(home, benchmarks, perplexity_paths, reward_prompts, reward, scorer)
    sessions = [ModelSession(ref, Path(home), checkpoint) for ref in refs]
    total = len(sessions) * sum(len(t.records) for t in tasks)
    if progress:
        progress(0, total)  # checked: the plan is known (the CLI's bar appears now, while a model loads)
    done, results = 0, []
    for session in sessions:
        for task in tasks:
            report = (lambda d, _t, base=done: progress(base + d, total)) if progress else None
            record = evaluate_task(session, task, template, settings, scorer, max_length, 8, use_cache, report, should_stop,
                                   judge)
            done += len(task.records)
            results.append(record)
            if on_result:
                on_result(record)
        session.release()  # one model in memory at a time
    return results


def check_plan(home: Path, benchmarks: Sequence[str | Path] = (), perplexity_paths: Sequence[str | Path] = (),
               reward_prompts: Sequence[str | Path] = (), reward: str | None = None,
               scorer: str | None = None) -> tuple[list[EvalTask], RewardJudge | None]:
    """Read every file and resolve the reward model, before anything is computed: the tasks and the judge.

    Raises:
        DatasetError: A file is missing or invalid, or ``choice`` was asked of items without choices.
        ModelError: The reward run does not exist, is not a reward model, or has no weights yet.
        ValueError: Nothing to evaluate, or prompts without a reward model (or the other way round).
    """
    if bool(reward_prompts) != bool(reward):
        raise ValueError("a reward evaluation needs both a reward model (--reward RUN) and prompts (--prompts FILE)")
    judge = RewardJudge(reward, Path(home)) if reward else None
    tasks = [load_task("benchmark", p, home) for p in benchmarks]
    tasks += [load_task("perplexity", p, home) for p in perplexity_paths]
    tasks += [load_task("reward", p, home) for p in reward_prompts]
    if not tasks:
        raise ValueError("nothing to evaluate: give a benchmark, a perplexity dataset or prompts for a reward model")
    for task in tasks:
        if task.kind == "benchmark":
            pick_scorer(task, scorer)  # a choice scorer on items without choices fails now
    return tasks, judge
