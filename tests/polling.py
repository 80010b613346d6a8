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


async def settle_workers(pilot, rounds: int = 3, timeout: float = 120.0) -> None:
    """Let a Textual app's workers finish, ``rounds`` times over (a finished worker may start another).

    Waits on the workers' states, not on ``wait_for_complete``: that raises ``WorkerCancelled``
    when an ``exclusive`` worker is replaced by a newer one of its group, and ``WorkerFailed`` for
    a worker whose error the app handles (a notification), which is often what a test expects.
    Whether a worker failed is the test's business, through what the app shows.
    """
    from textual.worker import WorkerState

    busy_states = (WorkerState.PENDING, WorkerState.RUNNING)
    for _ in range(rounds):
        deadline = time.monotonic() + timeout
        while busy := [worker for worker in pilot.app.workers if worker.state in busy_states]:
            if time.monotonic() > deadline:
                names = ", ".join(f"{worker.group}/{worker.description or worker.name}" for worker in busy)
                raise AssertionError(f"the app's workers were still running after {timeout:.0f} s: {names}")
            await pilot.pause(0.02)
        await pilot.pause()
