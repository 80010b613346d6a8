"""Evaluation: benchmark scores and perplexity, stored results, detached jobs, and ratings.

- :mod:`.evaluate` — what the CLI (``tui-ft eval``) and the Benchmark pane call;
- :mod:`.scoring` — the scorers (contains, exact, choice) and perplexity;
- :mod:`.model_session` — the model being evaluated, loaded only when a score is computed;
- :mod:`.store` — result files, keyed and fingerprinted, so nothing is recomputed;
- :mod:`.jobs` — evaluations that run as detached processes;
- :mod:`.ratings` — human ratings of chat replies.

A result record (the ``--json`` shape, also what is stored) is described in :mod:`.evaluate`.
Importing this package loads neither torch nor transformers (a test checks it).
"""

from tui_ft.engine.evaluation.evaluate import (
    EvalTask,
    ModelSession,
    default_scorer,
    default_settings,
    display_path,
    evaluate,
    evaluate_many,
    load_task,
    pick_scorer,
)
from tui_ft.engine.evaluation.jobs import list_jobs, read_job_status, start_eval_job, stop_eval_job
from tui_ft.engine.evaluation.scoring import (
    DEFAULT_MAX_NEW_TOKENS,
    SCORERS,
    BenchmarkResult,
    EvaluationStopped,
    ItemResult,
    PerplexityResult,
    perplexity,
    run_benchmark,
    score_contains,
    score_exact,
)
from tui_ft.engine.evaluation.store import load_results

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS", "SCORERS", "BenchmarkResult", "EvalTask", "EvaluationStopped", "ItemResult",
    "ModelSession", "PerplexityResult", "default_scorer", "default_settings", "display_path", "evaluate",
    "evaluate_many", "list_jobs", "load_results", "load_task", "perplexity", "pick_scorer", "read_job_status",
    "run_benchmark", "score_contains", "score_exact", "start_eval_job", "stop_eval_job",
]
