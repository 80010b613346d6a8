"""A tokenizer in a process of its own, for a dashboard that must not import transformers.

Loading a tokenizer imports transformers, and torch with it: about 5 s of imports, 2,000
modules and 250,000 objects, parts of it holding the GIL for hundreds of milliseconds. In the
dashboard's process, keys pressed during the load waited 300-400 ms (``bench/ui_latency.py``)
and every later full garbage collection walked those objects. The Datasets pane only needs
what the tokenizer computes (token counts, an example rendered with its loss mask), so a
child process loads the tokenizer once and answers with plain data, running the same engine
functions training uses.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from tui_ft.engine.data.formats import Dataset, Example
from tui_ft.engine.data.stats import DatasetStats

_tokenizers: dict[str, object] = {}  # in the child: path -> tokenizer
# As nice as a training worker (worker.DEFAULT_NICE): the dashboard (0) answers keys first, and
# the tokenizer's imports share the cores evenly with a run. At 10, with two nice-5 processes
# busy, the tokenizer took 11-15 s to load instead of 5 s.
CHILD_NICENESS = 5


@dataclass(frozen=True)
class TokenizerInfo:
    """What the pane needs to know about the tokenizer itself."""

    default_template: str
    has_chat_template: bool


@dataclass(frozen=True)
class RenderedExample:
    """One example as training sees it: token counts and ``(text, trained)`` pieces."""

    tokens: int
    trained_tokens: int
    full_length: int
    segments: list[tuple[str, bool]]

    @property
    def truncated(self) -> bool:
        return self.full_length > self.tokens


# ----- in the child process -------------------------------------------------------------------


def _tokenizer(path: str):
    if path not in _tokenizers:
        from tui_ft.engine.models import load_tokenizer

        _tokenizers[path] = load_tokenizer(Path(path))
    return _tokenizers[path]


def _info(path: str) -> TokenizerInfo:
    from tui_ft.engine.data.templates import default_template

    tokenizer = _tokenizer(path)
    return TokenizerInfo(default_template(tokenizer), bool(getattr(tokenizer, "chat_template", None)))


def _stats(path: str, dataset: Dataset, template: str, max_length: int) -> DatasetStats:
    from tui_ft.engine.data.stats import dataset_stats

    return dataset_stats(dataset, _tokenizer(path), template, max_length)


def _render(path: str, example: Example, template: str, max_length: int, train_on_prompt: bool) -> RenderedExample:
    from tui_ft.engine.data.templates import mask_segments, tokenize_example

    tokenizer = _tokenizer(path)
    tokenized = tokenize_example(example, tokenizer, template, max_length, train_on_prompt)
    return RenderedExample(len(tokenized.input_ids), tokenized.trained_tokens, tokenized.full_length,
                           mask_segments(tokenized, tokenizer))


# ----- in the dashboard -----------------------------------------------------------------------


class TokenizerProcess:
    """The tokenizer of the model folder ``path``, loaded in a child process on first use.

    Each call blocks until the child answers (call it from a worker thread); the child's
    exceptions (a bad template, a missing tokenizer) are raised here.
    """

    def __init__(self, path: Path):
        self.path = str(path)
        self._pool = self._new_pool()

    def info(self) -> TokenizerInfo:
        return self._call(_info)

    def stats(self, dataset: Dataset, template: str, max_length: int) -> DatasetStats:
        return self._call(_stats, dataset, template, max_length)

    def render(self, example: Example, template: str, max_length: int, train_on_prompt: bool) -> RenderedExample:
        return self._call(_render, example, template, max_length, train_on_prompt)

    def _call(self, function, *args):
        try:
            return self._pool.submit(function, self.path, *args).result()
        except BrokenProcessPool:  # the child died (killed, out of memory): one new child, once
            self._pool = self._new_pool()
            return self._pool.submit(function, self.path, *args).result()

    @staticmethod
    def _new_pool() -> ProcessPoolExecutor:
        from tui_ft.engine.processes import safe_path_env

        # multiprocessing starts `python -c ...`, which imports from the current folder (often the
        # workspace, maybe someone else's) first: the child and the resource tracker start now,
        # with PYTHONSAFEPATH (3.11+) keeping that folder off their sys.path.
        with safe_path_env():
            _start_resource_tracker()
            # spawn, not fork: the dashboard has threads running, and a forked child would
            # inherit their locks mid-use. Niced below the dashboard, which answers keys.
            pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=os.nice, initargs=(CHILD_NICENESS,))
            pool.submit(os.getpid)  # submit starts the child process, in this thread
        return pool


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with the real stderr.

    multiprocessing hands the tracker ``sys.stderr``'s file descriptor, and a running Textual
    app replaces ``sys.stderr`` with an object whose ``fileno()`` is -1: starting the child
    failed with "bad value(s) in fds_to_keep". The swap lasts the few milliseconds of the
    tracker's start, once a process.
    """
    from multiprocessing import resource_tracker

    stderr = sys.stderr
    try:
        if sys.__stderr__ is not None:
            sys.stderr = sys.__stderr__
        resource_tracker.ensure_running()
    finally:
        sys.stderr = stderr


_processes: dict[str, TokenizerProcess] = {}
_lock = threading.Lock()


def tokenizer_process(path: Path) -> TokenizerProcess:
    """The process serving ``path``'s tokenizer, shared by every pane and app of this process."""
    with _lock:
        key = str(path)
        if key not in _processes:
            _processes[key] = TokenizerProcess(path)
        return _processes[key]
