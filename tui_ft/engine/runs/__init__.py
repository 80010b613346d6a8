"""Runs: the run folder, the training config, and the worker processes that train.

- :mod:`.folder` — the files of ``checkpoints/<run>/`` (``status.json``, ``metrics.jsonl``,
  checkpoints), read and written safely;
- :mod:`.config` and :mod:`.config_checks` — :class:`TrainConfig` and its validation;
- :mod:`.record` — :class:`RunRecord`, a run's ``run.json`` typed (its config and resolved model);
- :mod:`.lifecycle` — create, launch, watch, stop, resume and list runs (what the CLI and the
  dashboard call);
- :mod:`.memory_plan` — the peak memory a run will need, checked before its folder exists;
- :mod:`.worker` and :mod:`.group_launcher` — the processes' entry points
  (``python -m tui_ft.engine.worker RUN_DIR`` stays the documented command).

Importing this package loads neither torch nor transformers: the dashboard lists and
controls runs without them.
"""

from tui_ft.engine.runs.config import ConfigError, TrainConfig
from tui_ft.engine.runs.config_checks import validate_config
from tui_ft.engine.runs.folder import (
    MetricsTail,
    MetricsWriter,
    list_checkpoints,
    merge_records,
    metrics_path,
    read_metrics,
    read_run_config,
)
from tui_ft.engine.runs.lifecycle import (
    RunError,
    RunInfo,
    create_run,
    delete_run,
    launch_run,
    list_runs,
    read_status,
    resume_run,
    run_dir_for,
    stop_run,
)
from tui_ft.engine.runs.memory_plan import MemoryPlan, MemoryPlanError, plan_memory
from tui_ft.engine.runs.record import RunRecord
from tui_ft.engine.runs.state import FINAL_STATES, LIVE_STATES, RunState

__all__ = [
    "FINAL_STATES", "LIVE_STATES", "ConfigError", "MemoryPlan", "MemoryPlanError", "RunState",
    "MetricsTail", "MetricsWriter", "RunError", "RunInfo", "RunRecord",
    "TrainConfig", "create_run", "delete_run", "launch_run", "list_checkpoints", "list_runs", "merge_records", "metrics_path",
    "plan_memory", "read_metrics", "read_run_config", "read_status", "resume_run", "run_dir_for", "stop_run",
    "validate_config",
]
