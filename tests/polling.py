"""Waiting for something another process does, in tests (importable from every test folder:
pytest puts ``tests/`` on ``sys.path`` for ``tests/conftest.py``)."""

from __future__ import annotations

import time


def wait_for(predicate, what: str, timeout: float = 180.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


async def settle_workers(pilot, rounds: int = 3, attempts: int = 200) -> None:
    """Let a Textual app's workers finish, ``rounds`` times over (a finished worker may start another).

    ``wait_for_complete`` raises ``WorkerCancelled`` when an ``exclusive`` worker it waits on is
    replaced by a newer one of its group (the Datasets pane restarts its stats worker when the
    tokenizer and the first row arrive in either order); then the newer one is waited on instead.
    """
    from textual.worker import WorkerCancelled

    for _ in range(rounds):
        for _ in range(attempts):
            try:
                await pilot.app.workers.wait_for_complete()
                break
            except WorkerCancelled:
                await pilot.pause(0.02)
        else:
            raise AssertionError("the app's workers kept being cancelled")
        await pilot.pause()
