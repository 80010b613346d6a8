"""Downloads in the terminal: a rich bar on stderr with bytes done and in all, speed and time left.

:func:`tui_ft.cli.main` shows every download a command starts with :func:`download_display`
(a Hub model's files, see :mod:`tui_ft.engine.models.hub`); ``tui-ft train`` draws the bar
of its run's worker from ``status.json`` with :func:`byte_count_column` (see
``commands/train.py``). Not a subcommand: it has no ``add_parser``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


def download_display(pause=None):
    """A download display: each download gets a bar on stderr, then one line saying what came.

    Args:
        pause: A running ``rich.progress.Progress`` (``eval``'s bar) to hide while a download
            shows, since two live displays on one terminal overwrite each other.
    """

    @contextmanager
    def display(what: str) -> Iterator:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        from tui_ft.engine.models.hub import downloaded_message
        from tui_ft.safe_text import plain

        console = Console(stderr=True)
        if pause is not None:
            pause.stop()
        seen = {"done": 0, "total": None}
        started = time.monotonic()
        try:
            # The model name comes from the user or a run.json: shown plain, never as markup.
            with Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True) as progress:
                task = progress.add_task(what, total=None)

                def report(done: int, total: int | None) -> None:
                    seen.update(done=done, total=total)
                    progress.update(task, completed=done, total=total)

                yield report
            if seen["done"]:  # the bar was transient: one line stays, saying what came
                console.print(plain(downloaded_message(what, seen["done"], time.monotonic() - started)))
        finally:
            if pause is not None:
                pause.start()

    return display


def byte_count_column():
    """A column that shows a step count (``3/40``), or bytes (``1.2/15.2 GB``) for a task with ``bytes=True``."""
    from rich.progress import DownloadColumn, MofNCompleteColumn, ProgressColumn

    steps, sizes = MofNCompleteColumn(), DownloadColumn()

    class ByteOrStepCount(ProgressColumn):
        def render(self, task):
            return (sizes if task.fields.get("bytes") else steps).render(task)

    return ByteOrStepCount()
