"""The training loop for one run folder: SFT (full, freeze, LoRA) and DPO.

Shape (after torchtune's recipes): ``setup`` (data, model, optimizer; resume from the latest
checkpoint) → ``train`` (steps, evaluation, checkpoints, stop requests) → ``save`` (adapter or
model). Everything the loop learns goes to ``metrics.jsonl`` and ``status.json``; the loop
never prints progress bars (the worker's output is a log file).
"""

from __future__ import annotations

import errno
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tui_ft.engine.models.devices import pick_device
from tui_ft.engine.processes import STOP_FILE
from tui_ft.engine.runs import list_checkpoints
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.folder import METRICS_FILE, MetricsWriter, update_status
from tui_ft.engine.runs.record import RunRecord
from tui_ft.engine.runs.state import RunState
from tui_ft.engine.training.batching import epoch_batches, steps_per_epoch
from tui_ft.engine.training.checkpoint import load_checkpoint, remove_staging, rng_state, save_checkpoint
from tui_ft.engine.training.collapse import CollapseWatch
from tui_ft.engine.training.distributed import Group, agree, barrier, broadcast_object, claim_device, gather_objects, reduce_stats, shard
from tui_ft.engine.training.methods import autocast_for, build_model, count_params, save_final
from tui_ft.engine.training.objective import Objective, StepOutput
from tui_ft.engine.training.trackers import Trackers, open_trackers
from tui_ft.engine.workspace import RUN_FILE

OOM_ADVICE = "out of memory: try a smaller --batch-size or a shorter --max-length"
# torch's CPU allocator says "can't allocate memory" (a RuntimeError, not torch.OutOfMemoryError).
OOM_CLUES = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class TrainingFailed(Exception):
    """The run cannot go on (non-finite loss, out of memory); the message is for the user.

    Attributes:
        every_rank: Every process of a group meets this failure at the same step (it follows
            from values they share, like the reduced loss), so rank 0 alone reports it.
    """

    def __init__(self, message: str, every_rank: bool = False):
        super().__init__(message)
        self.every_rank = every_rank


class Trainer:
    """Train the run in ``run_dir`` from its ``run.json``, resuming from its latest checkpoint.

    Args:
        run_dir: The run folder.
        stop_requested: Polled at every step boundary (besides the ``STOP`` file); when true the
            trainer checkpoints and ends as ``stopped``.
        group: This process's place among several (see :mod:`tui_ft.engine.training.distributed`);
            only rank 0 writes status, metrics and checkpoints.
    """

    def __init__(self, run_dir: Path, stop_requested: Callable[[], bool] | None = None, group: Group | None = None,
                 trust_remote_code: bool = False):
        self.group = group or Group()
        self.trust_remote_code = trust_remote_code  # this launch's choice; run.json's flag is not consent
        self.run_dir = Path(run_dir)
        self.record = RunRecord.read(self.run_dir)
        if self.record.template is None:  # create_run always fixes one: a run.json written by hand may not
            raise TrainingFailed(f"{self.run_dir / RUN_FILE}: names no template (alpaca or chat)", every_rank=True)
        self.config = self.record.config.resolved()
        self.stop_requested = stop_requested or (lambda: False)
        self.metrics: MetricsWriter | None = None
        self.trackers: Trackers | None = None  # report_to's (rank 0 only)
        self.step = 0
        self.epoch = 0
        self.batch_index = 0  # next batch of the current epoch
        self.total_steps: int | None = None
        self.train_data: Objective | None = None
        self._step_times: list[float] = []

    # ----- setup -------------------------------------------------------------------------

    def setup(self) -> None:
        """Load data and model, build the optimizer and scheduler, resume if a checkpoint exists."""
        from transformers.utils import logging as hf_logging

        from tui_ft.engine.models import load_tokenizer

        hf_logging.disable_progress_bar()  # the log is a file: bars would fill it with carriage returns
        config = self.config
        if config.threads:
            torch.set_num_threads(config.threads)
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.device = self.group.device or pick_device(config.device)
        claim_device(self.device)
        self.precision = config.precision  # resolved to bf16 or fp32 once the model is loaded
        self.autocast = lambda: autocast_for(self.device, self.precision)
        self._status(message="loading the data")
        self.tokenizer = load_tokenizer(self.record.model_path)
        self.train_data, self.eval_data = build_objectives(self.record.template, config, self.tokenizer)
        if self.eval_data is not None and not self.eval_data.items:
            self.eval_data = None
        if not self.train_data.items:
            raise TrainingFailed("no example fits: every trained token is beyond max_length", every_rank=True)
        self._status(message="loading the model")
        from tui_ft.engine.training.parallel_model import wrap_for_training

        # FSDP moves each shard to the device itself: the whole model never sits on one GPU.
        sharded = config.fsdp and self.group.active
        self.model = build_model(self.record, "cpu" if sharded else self.device, self.trust_remote_code,
                                 compute_device=self.device)
        from tui_ft.engine.training.cpu_speed import speed_up_for_cpu

        self.precision = speed_up_for_cpu(self.model, self.device, config.precision)
        self.counts = count_params(self.model)
        # The uniform-guess symptom is a token cross-entropy's; DPO's loss is watched for blow-ups only.
        vocab = getattr(getattr(self.model, "config", None), "vocab_size", None)
        self.collapse = CollapseWatch(vocab if config.method not in ("dpo", "reward") else None)
        if self.group.is_main:
            print(self.counts.describe(), flush=True)
        self.steps_per_epoch = steps_per_epoch(len(self.train_data.items), config.batch_size, config.grad_accum)
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        # Every rank prepares, together: DPO shares its reference pass out among them.
        self.train_data.prepare(self.model, self.run_dir, self.device, self.autocast, self.eval_data, group=self.group)
        self.step_model = wrap_for_training(self.model, self.group, sharded, self.precision)
        if self.group.active:
            # The weights are initialised (the same on every rank); from here each rank draws its
            # own dropout masks, as one process would for the whole batch.
            torch.manual_seed(config.seed + self.group.rank)
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        self.metrics = MetricsWriter(self.run_dir / METRICS_FILE) if self.group.is_main else None
        checkpoints = list_checkpoints(self.run_dir)
        latest = broadcast_object(str(checkpoints[-1]) if checkpoints else None, self.group)
        if latest:
            position = self._load_checkpoint(Path(latest))
            self.step, self.epoch, self.batch_index = position["step"], position["epoch"], position["batch_index"]
            self._event("resumed", f"resumed from {Path(latest).name}")
        else:
            self._event("started", self.counts.describe(), total=self.counts.total, trainable=self.counts.trainable,
                        frozen=self.counts.frozen, trainable_pct=round(self.counts.trainable_pct, 4),
                        examples=len(self.train_data.items), eval_examples=len(self.eval_data.items) if self.eval_data else 0,
                        dropped=self.train_data.dropped, truncated=self.train_data.truncated, device=self.device,
                        nproc=self.group.world, precision=self.precision)
        if self.group.is_main:
            self.trackers = open_trackers(config.report_to, self.run_dir, self.step)
        self._status(state=RunState.RUNNING, total_steps=self.total_steps, message="training")

    def _optimizer(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        kwargs = {"lr": self.config.lr, "weight_decay": self.config.weight_decay}
        if self.config.fsdp and self.group.active:
            return torch.optim.AdamW(params, **kwargs)  # sharded (DTensor) parameters: the default kernel
        try:
            return torch.optim.AdamW(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # fused needs a device and dtype torch supports
            return torch.optim.AdamW(params, **kwargs)

    def _scheduler(self):
        from transformers import get_scheduler

        name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[self.config.scheduler]
        warmup = int(self.config.warmup_ratio * self.total_steps)
        return get_scheduler(name, self.optimizer, num_warmup_steps=warmup, num_training_steps=self.total_steps)

    # ----- the loop ----------------------------------------------------------------------

    def train(self) -> str:
        """Run steps until done or asked to stop; returns the final state (``finished``/``stopped``)."""
        config = self.config
        eval_every = config.eval_every or max(1, self.total_steps // 5)
        while self.step < self.total_steps:
            if self._should_stop():
                return self._stop()
            record = self._train_step()
            self._status(message=f"loss {record['loss']:.4f}")
            if self.eval_data is not None and (self.step % eval_every == 0 or self.step == self.total_steps):
                self.evaluate()
            if config.save_every and self.step % config.save_every == 0 and self.step < self.total_steps:
                self._checkpoint()
        self._save_final()
        self._event("finished", f"finished after {self.step} steps")
        self._status(state=RunState.FINISHED, message=f"finished after {self.step} steps")
        return RunState.FINISHED

    def _next_batches(self) -> list[list[int]]:
        """The micro-batches of the next optimizer step; never crosses an epoch boundary."""
        # Length-grouped batches, unless the objective packs them (no padding to save).
        grouped = self.train_data.group_by_length
        order = lambda epoch: epoch_batches(self.train_data.lengths(), self.config.batch_size,  # noqa: E731
                                            self.config.seed, epoch, grouped)
        batches = order(self.epoch)
        if self.batch_index >= len(batches):
            self.epoch, self.batch_index = self.epoch + 1, 0
            batches = order(self.epoch)
        chosen = batches[self.batch_index : self.batch_index + self.config.grad_accum]
        self.batch_index += len(chosen)
        return chosen

    def _train_step(self) -> dict:
        started = time.perf_counter()
        from tui_ft.engine.training.parallel_model import as_float, gradient_sync

        self.model.train()
        micro = self._next_batches()
        weight = sum(self.train_data.weight(indices) for indices in micro)
        # Divide by the whole step's weight (trained tokens, or pairs for DPO): the summed
        # gradient is then the one a single batch of every micro-batch would give. DDP and FSDP
        # average gradients over the processes, hence the process count (1 for one process).
        scale = self.group.world / max(1, weight)
        stats = []
        for number, indices in enumerate(micro):
            inject_fault(self.group.rank, self.step + 1)
            with gradient_sync(self.step_model, number == len(micro) - 1):
                output, real = self._forward(self.train_data, indices)
                (output.loss_sum * (scale if real else 0.0)).backward()
            stats.append(output.stats)
        stats = reduce_stats(stats, self.group)  # sums over every process: the global batch's values
        values = self.train_data.summarize(stats)
        step = self.step + 1
        if not math.isfinite(values["loss"]):
            raise TrainingFailed(f"the loss became {values['loss']} at step {step}; {self._last_good()}", every_rank=True)
        clip = self.config.max_grad_norm or math.inf
        grad_norm = as_float(torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], clip))
        if not math.isfinite(grad_norm):
            raise TrainingFailed(f"the gradient norm became {grad_norm} at step {step}; {self._last_good()}",
                                 every_rank=True)
        lr = self.scheduler.get_last_lr()[0]
        symptom = self.collapse.check(values["loss"], grad_norm)
        if symptom:  # every rank sees the same reduced loss and norm, so every rank stops here
            raise TrainingFailed(f"diverged at step {step}: {symptom}; lower the learning rate (now {lr:g}); "
                                 f"{self._last_good()}", every_rank=True)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
        self.step = step
        elapsed = time.perf_counter() - started
        tokens = sum(s["tokens"] for s in stats)
        record = self._log(
            "train", **values, lr=lr, grad_norm=grad_norm, tokens=tokens,
            padding=sum(s["padding"] for s in stats), step_time=elapsed, tokens_per_s=tokens / max(elapsed, 1e-9),
        )
        self._step_times.append(elapsed)
        return record

    def _forward(self, objective: Objective, indices: list[int]) -> tuple[StepOutput, bool]:
        """This process's share of a global micro-batch through the step model.

        Returns:
            The output, and False when the share was empty: the last, short batch of an epoch
            may leave a process nothing, and it then runs the batch's first example with zeroed
            statistics (DDP and FSDP need every process in every forward and backward).
        """
        mine = shard(indices, self.group)
        batch = objective.collate(mine or indices[:1], self.device)
        with self.autocast():
            output = self.step_model(objective, batch)
        if not mine:
            output = StepOutput(output.loss_sum, {key: torch.zeros_like(value) if isinstance(value, torch.Tensor) else type(value)()
                                                  for key, value in output.stats.items()})
        return output, bool(mine)

    def _log(self, kind: str, **values) -> dict:
        """Append a metrics record (rank 0 only) and return it."""
        if self.metrics is None:
            return {"kind": kind, "step": self.step, **values}
        record = self.metrics.log(kind, self.step, self._epoch_float(), **values)
        if self.trackers is not None:
            self.trackers.log(kind, self.step, values)
        return record

    def evaluate(self) -> dict:
        """Evaluate on the held-out set and log an ``eval`` record (loss and perplexity, or DPO rewards)."""
        self.model.eval()
        stats = []
        with torch.no_grad():
            for indices in self.eval_data.eval_batches(self.config.batch_size):
                stats.append(self._forward(self.eval_data, indices)[0].stats)
        self.model.train()
        values = self.eval_data.summarize(reduce_stats(stats, self.group))
        return self._log("eval", **values)

    # ----- stop, checkpoints, status -----------------------------------------------------

    def _should_stop(self) -> bool:
        """A signal to any process, or the ``STOP`` file (rank 0 reads it), stops every process at this step."""
        asked = self.stop_requested() or (self.group.is_main and (self.run_dir / STOP_FILE).exists())
        return agree(asked, self.group)

    def _stop(self) -> str:
        self._status(state=RunState.STOPPING, message="saving a checkpoint")
        saved = broadcast_object((self.run_dir / "ckpt" / f"step-{self.step}").is_dir(), self.group)
        if self.step > 0 and not saved:
            self._checkpoint()  # a run stopped right after resuming already has this one
        self._event("stopped", f"stopped at step {self.step}")
        self._status(state=RunState.STOPPED, message=f"stopped at step {self.step}; resume to continue")
        return RunState.STOPPED

    def _checkpoint(self) -> None:
        from tui_ft.engine.training.parallel_model import is_sharded
        from tui_ft.engine.training.sharded_checkpoint import save_sharded

        position = {"step": self.step, "epoch": self.epoch, "batch_index": self.batch_index}
        keep = self.config.keep_checkpoints
        if is_sharded(self.step_model):
            path = save_sharded(self.run_dir, self.step_model, self.optimizer, self.scheduler, position, keep, self.group)
        else:
            # DDP keeps identical weights and optimizer state on every rank: rank 0 writes them,
            # with every rank's random generators (each rank draws its own dropout masks; each
            # rank's CUDA generator is its own GPU's).
            rngs = gather_objects(rng_state(self.device), self.group)
            path = Path(self.run_dir) / "ckpt" / f"step-{self.step}"
            if self.group.is_main:
                path = save_checkpoint(self.run_dir, self.model, self.optimizer, self.scheduler, position, keep, rngs)
            barrier(self.group)
        self._event("checkpoint", f"saved {path.name}", path=str(path))
        self._status(checkpoint=self.step)

    def _load_checkpoint(self, folder: Path) -> dict:
        from tui_ft.engine.training.sharded_checkpoint import is_sharded_checkpoint, load_sharded

        if is_sharded_checkpoint(folder):
            return load_sharded(folder, self.step_model, self.optimizer, self.scheduler, self.group)
        return load_checkpoint(folder, self.model, self.optimizer, self.scheduler, rank=self.group.rank, device=self.device)

    def _save_final(self) -> None:
        """Write ``adapter/`` or ``model/`` from rank 0 (FSDP gathers the full weights first)."""
        from tui_ft.engine.training.parallel_model import full_state_dict, is_sharded

        state = full_state_dict(self.step_model, self.group) if is_sharded(self.step_model) else None
        if self.group.is_main:
            save_final(self.model, self.tokenizer, self.run_dir, self.config.uses_lora, state_dict=state)
        barrier(self.group)

    def _last_good(self) -> str:
        checkpoints = list_checkpoints(self.run_dir)
        return f"the last good checkpoint is {checkpoints[-1].name}" if checkpoints else "there is no checkpoint yet"

    def _epoch_float(self) -> float:
        if self.train_data is None or not self.train_data.items:
            return float(self.epoch)
        batches = math.ceil(len(self.train_data.items) / self.config.batch_size)
        return self.epoch + min(1.0, self.batch_index / batches)

    def _event(self, event: str, message: str, **values) -> None:
        if not self.group.is_main:
            return
        print(f"[step {self.step}] {message}", flush=True)
        if self.metrics is not None:
            self.metrics.log("event", self.step, self._epoch_float(), event=event, message=message, **values)

    def _status(self, **changes) -> None:
        if not self.group.is_main:
            return
        if self._step_times and self.total_steps:
            recent = self._step_times[-20:]
            changes["eta_s"] = round(sum(recent) / len(recent) * (self.total_steps - self.step), 1)
        update_status(self.run_dir, step=self.step, epoch=round(self._epoch_float(), 4), **changes)


def build_objectives(template: str, config: TrainConfig, tokenizer) -> tuple[Objective, Objective | None]:
    """The training objective and the held-out one (``None`` when there is no evaluation set).

    ``template`` is the one the run fixed at creation (:attr:`RunRecord.template`).
    """
    from tui_ft.engine.data import load_dataset, sft_examples
    from tui_ft.engine.training.batching import split_eval
    from tui_ft.engine.training.sft import SFTObjective

    dataset = load_dataset(config.dataset)
    if config.method == "dpo":
        from tui_ft.engine.training.dpo import DPOObjective

        records = list(dataset.records)
        build = lambda items: DPOObjective(items, tokenizer, template, config.max_length, config.beta)  # noqa: E731
    elif config.method == "reward":
        from tui_ft.engine.training.reward import RewardObjective

        records = list(dataset.records)
        build = lambda items: RewardObjective(items, tokenizer, template, config.max_length)  # noqa: E731
    else:
        records = sft_examples(dataset)
        build = lambda items: SFTObjective(items, tokenizer, template, config.max_length, config.train_on_prompt)  # noqa: E731
    if config.eval_dataset:
        held = load_dataset(config.eval_dataset)
        eval_records = list(held.records) if config.method in ("dpo", "reward") else sft_examples(held)
        return build(records), build(eval_records)
    train_idx, eval_idx = split_eval(len(records), config.eval_split, config.seed)
    eval_data = build([records[i] for i in eval_idx]) if eval_idx else None
    return build([records[i] for i in train_idx]), eval_data


def train_run(run_dir: Path, stop_requested: Callable[[], bool] | None = None, group: Group | None = None,
              trust_remote_code: bool = False) -> str:
    """Set up and train the run in ``run_dir``; returns ``finished`` or ``stopped``.

    With ``group`` (a process of a group of ranks), every process of the group calls this.
    ``trust_remote_code`` lets the base model's own code run: the launch's choice
    (``--trust-remote-code``), never what ``run.json`` says.

    Raises:
        TrainingFailed: For a non-finite loss or an out-of-memory error (the caller marks the
            run ``failed``).
    """
    trainer = Trainer(run_dir, stop_requested, group, trust_remote_code)
    try:
        trainer.setup()
        return trainer.train()
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise TrainingFailed(f"{oom_advice(trainer)} ({_where(trainer)})") from error
    except RuntimeError as error:
        if any(clue in str(error).lower() for clue in OOM_CLUES):
            raise TrainingFailed(f"{oom_advice(trainer)} ({_where(trainer)})") from error
        raise
    except OSError as error:
        remove_staging(run_dir)  # a half-written checkpoint holds disk space the user must free
        if error.errno in DISK_FULL:
            raise TrainingFailed(f"out of disk space ({error.strerror}) at step {trainer.step}: free some space, "
                                 f"then resume; {trainer._last_good()}") from error
        raise
    finally:
        if trainer.metrics is not None:
            trainer.metrics.close()
        if trainer.trackers is not None:
            trainer.trackers.close()


FAULT_ENV = "TUI_FT_TEST_FAULT"  # tests only: "RANK:STEP:oom" or "RANK:STEP:crash" fails that rank there


def inject_fault(rank: int, step: int) -> None:
    """Raise the failure ``$TUI_FT_TEST_FAULT`` asks for at this rank and step (tests of failure handling)."""
    import os

    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    fault_rank, fault_step, kind = wanted.split(":")
    if (int(fault_rank), int(fault_step)) == (rank, step):
        if kind == "oom":
            raise torch.OutOfMemoryError(f"injected: CUDA out of memory on rank {rank} (tried to allocate 2.00 GiB)")
        raise RuntimeError(f"injected crash on rank {rank}")


def oom_advice(trainer: Trainer) -> str:
    """What to change after an out-of-memory error; LoRA is advised only to a run that trains every weight."""
    return OOM_ADVICE + ("" if trainer.config.uses_lora else ", or --method lora")


def _where(trainer: Trainer) -> str:
    """Where a failure happened: the step being trained, and the checkpoint to resume from."""
    if trainer.total_steps is None:
        return f"while loading; {trainer._last_good()}"
    return f"at step {trainer.step + 1}; {trainer._last_good()}"
