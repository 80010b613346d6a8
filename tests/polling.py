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
