"""The states of a run, and of an evaluation job: what ``status.json``'s ``state`` says.

``queued`` (created, its worker not started yet), ``running``, ``stopping`` (asked to stop: a
checkpoint is being written), then one of the final states: ``stopped`` (resumable),
``finished``, ``failed`` (with the reason in ``message``) and ``died`` (never written by a
worker: a live state whose process is gone reads so).
"""

from __future__ import annotations

from enum import Enum


class RunState(str, Enum):
    """A state as ``status.json`` spells it; a member equals its string, so files and JSON keep plain text.

    A ``str`` mixin rather than ``enum.StrEnum`` (Python 3.11+): ``str()`` and f-strings give the
    value on every supported Python.
    """

    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FINISHED = "finished"
    FAILED = "failed"
    DIED = "died"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


FINAL_STATES = (RunState.STOPPED, RunState.FINISHED, RunState.FAILED, RunState.DIED)
LIVE_STATES = (RunState.QUEUED, RunState.RUNNING, RunState.STOPPING)
RESUMABLE_STATES = (RunState.STOPPED, RunState.DIED, RunState.FAILED)  # a worker may start again from a checkpoint
