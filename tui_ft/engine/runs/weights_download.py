"""A run's Hub model weights, fetched by its worker before training, with the bytes in ``status.json``.

``create_run`` fetched only the model's config and tokenizer, so that creating a run takes
seconds whatever the model's size. The worker fetches the weights (safetensors, resumable)
before it loads the model. While it does, ``status.json`` says how far it is
(``message``: ``downloading Qwen/Qwen2.5-7B: 1.2 GB of 15.2 GB``, and ``download``:
``{"what", "done", "total"}`` for a bar), written about once a second; the Runs pane and
``tui-ft runs`` show the message, ``tui-ft train``'s follow output draws the bar. A stop
request ends the download at its next chunk (``stopped``; a resume continues the partial
file); a failure is one line (``failed``) saying what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tui_ft.engine.runs.folder import METRICS_FILE, MetricsWriter, read_run_config, update_status
from tui_ft.engine.runs.state import RunState

STATUS_INTERVAL_S = 1.0  # status.json is rewritten whole: once a second is enough for a person to watch


class DownloadStatus:
    """A download display (see :data:`tui_ft.engine.models.hub.Display`) that writes ``status.json``."""

    def __init__(self, run_dir: Path, interval_s: float = STATUS_INTERVAL_S):
        self.run_dir, self.interval_s = Path(run_dir), interval_s
        self.what, self.done, self.total = "", 0, None  # the latest report, for the stop message

    @contextmanager
    def __call__(self, what: str) -> Iterator[Callable[[int, int | None], None]]:
        from tui_ft.engine.models.hub import download_message, downloaded_message

        self.what = what
        last_write = -float("inf")
        started = time.monotonic()

        def report(done: int, total: int | None) -> None:
            nonlocal last_write
            self.done, self.total = done, total
            now = time.monotonic()
            if now - last_write >= self.interval_s or (total is not None and done >= total):
                last_write = now
                update_status(self.run_dir, message=download_message(what, done, total),
                              download={"what": what, "done": done, "total": total})

        try:
            yield report
        finally:
            update_status(self.run_dir, download=None)
        if self.done:  # something came (not a snapshot already complete): say so in the log and the history
            message = downloaded_message(what, self.done, time.monotonic() - started)
            print(message, flush=True)
            writer = MetricsWriter(self.run_dir / METRICS_FILE)
            writer.log("event", 0, 0.0, event="downloaded", message=message)
            writer.close()


def fetch_weights(run_dir: Path, should_stop: Callable[[], bool], is_main: bool = True) -> bool:
    """Fetch the run's Hub model weights if they are missing; returns True when a stop ended the download.

    Args:
        run_dir: The run folder.
        should_stop: Polled after every chunk (a signal, or the ``STOP`` file).
        is_main: This process writes the run's status (rank 0). Other ranks fetch too: the
            blob locks of the Hugging Face cache make them wait for rank 0's files, and a rank
            that runs on another server fetches into its own cache.

    Raises:
        ModelError: The download failed, not stopped (one line saying what to do).
    """
    from tui_ft.engine.models import DownloadStopped, ModelError, fetch_run_weights

    display = DownloadStatus(run_dir) if is_main else None
    try:
        fetch_run_weights(read_run_config(run_dir), display, should_stop)
    except DownloadStopped:
        pass
    except ModelError:
        if not should_stop():
            raise
        # Asked to stop while the connection failed (a stalled read timing out): a stop, not a failure.
    else:
        return False
    if is_main:
        kept = ""
        if display is not None and display.done:
            from tui_ft.engine.models import download_message

            kept = f" ({download_message(display.what, display.done, display.total).split(': ', 1)[-1]} kept)"
        message = f"stopped while downloading the weights{kept}; resume to continue the download"
        print(message, flush=True)
        writer = MetricsWriter(Path(run_dir) / METRICS_FILE)
        writer.log("event", 0, 0.0, event="stopped", message=message)
        writer.close()
        update_status(run_dir, state=RunState.STOPPED, message=message, download=None)
    return True
