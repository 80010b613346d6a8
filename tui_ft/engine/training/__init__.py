"""Training: the loop a run's worker runs, its objectives (SFT, DPO), checkpoints and speed-ups.

- :mod:`.trainer` — :class:`~.trainer.Trainer` (setup, train, checkpoint, save) and :func:`train_run`;
- :mod:`.methods` — the base model with the method applied (full, freeze, LoRA), saved at the end;
- :mod:`.batching` (batches, the SFT objective), :mod:`.dpo`, :mod:`.packing`;
- :mod:`.checkpoint` and :mod:`.sharded_checkpoint` — resumable state;
- :mod:`.distributed` and :mod:`.parallel_model` — several processes as one run;
- :mod:`.cpu_speed` — bf16 and cheaper kernels on CPUs;
- :mod:`.export` — a run's weights merged into one model folder.

Only worker processes and commands that need weights import this package's modules.
"""

from tui_ft.engine.training.export import export_merged
from tui_ft.engine.training.trainer import TrainingFailed, train_run

__all__ = ["TrainingFailed", "export_merged", "train_run"]
