"""kill -9 of the worker at seeded random points: checkpoints load, the run reads ``died``, and a
resume reproduces the uninterrupted run (losses and final weights within 1e-5), for LoRA and
full fine-tuning.

Each method trains one run to the end in-process (the reference), then the same config in
forked workers (see ``workers.py``) that are killed KILLS times: after a seeded number of
steps plus a random fraction of a step, and twice the moment a checkpoint starts being
written. Between kills the engine's ``resume_run`` starts the next worker; after the last one
``tui-ft runs resume`` (in-process ``cli.main``) finishes the run.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tui_ft.cli import main
from tui_ft.engine.runs import lifecycle as runs
from tui_ft.engine.runs import list_checkpoints, list_runs, read_metrics, read_status, resume_run
from tui_ft.engine.training.trainer import train_run

from report import Section
from workers import Progress, checkpoint_contents, forked, new_run, one_thread, train_losses, train_steps, wait_for  # noqa: F401

STEPS = 24  # 8 examples in batches of 2: 4 steps an epoch, so kills land in several epochs
KILLS = 8  # per method: six after a random number of steps and a random delay, two aimed at a checkpoint write
METHODS = {
    "lora": {"method": "lora", "lr": 2e-2, "lora_dropout": 0.1},  # dropout draws from the restored generator
    "full": {"method": "full", "lr": 1e-3},
}

SECTION = Section(
    "kill-resume",
    "kill -9 of the worker, then resume",
    [
        "Written by `tests/reliability/test_kill_resume.py`. A tiny Llama (2 layers, the real tokenizer) trains",
        f"{STEPS} steps on CPU with a checkpoint every step; its worker is killed with SIGKILL {KILLS} times per method",
        "(after a seeded random number of steps plus a random part of a step; two of them held inside a checkpoint",
        "write, its weights written and the rest not, and killed there), each time resumed with the engine's",
        "`resume_run`, and finished with `tui-ft runs resume`. The",
        "reference is the same config trained without interruption. Workers are forked from the test process (no",
        "second import of torch); `tests/engine/test_runs_worker.py` kills a `launch_run` worker the same way.",
    ],
    ["fault", "method", "trials", "outcome"],
    [f"{check}-{method}" for method in METHODS for check in ("kill", "resume")] + ["restart-lora", "prune-full", "final-full"],
)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    SECTION.write_if_complete()


def max_difference(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[name] - b[name]).abs().max()) for name in a)


def final_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    folder = run_dir / ("adapter" if (run_dir / "adapter").is_dir() else "model")
    return load_file(next(folder.glob("*.safetensors")))


class CheckpointGate:
    """Holds a forked worker inside a checkpoint write until it is killed, when the gate is shut.

    ``torch.save`` is wrapped in the test process before the workers are forked: once the gate
    file exists, the worker that writes a staging folder's ``optimizer.pt`` says so in a file
    and then waits to be killed. A kill aimed at a checkpoint so always lands mid-write (the
    weights written, the optimizer, scheduler, RNG and position not yet), however fast the
    write and however busy the machine.
    """

    def __init__(self, folder: Path, monkeypatch):
        import torch

        self.gate, self.reached = folder / "hold-checkpoint-writes", folder / "checkpoint-write-held"
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None)  # a path or an open file
            path = Path(name) if isinstance(name, (str, os.PathLike)) else None
            if path and path.name == "optimizer.pt" and path.parent.name.startswith(".tmp-step-") and self.gate.exists():
                self.reached.write_text(str(path.parent))
                while True:  # until the test's SIGKILL
                    time.sleep(0.05)

        monkeypatch.setattr(torch, "save", save)

    def hold_next_write(self) -> Path:
        """Shut the gate and wait until a worker is held mid-write; returns its staging folder."""
        self.reached.unlink(missing_ok=True)
        self.gate.touch()
        staging = Path(wait_for(lambda: self.reached.exists() and self.reached.read_text(), "a checkpoint write to be held"))
        assert staging.is_dir() and staging.name.startswith(".tmp-step-"), staging
        return staging

    def open(self) -> None:
        self.gate.unlink(missing_ok=True)


def kill_when(progress: Progress, starts: int, steps: int, gate: CheckpointGate | None, delay: float = 0.0) -> None:
    """Wait until the ``starts``-th worker trained ``steps`` steps, then wait ``delay`` seconds or,
    with ``gate``, until the worker is held inside a checkpoint write (a kill mid-write)."""
    wait_for(lambda: progress.update().starts >= starts and progress.step >= progress.start_step + steps,
             f"worker {starts} to train {steps} steps")
    if gate is not None:
        gate.hold_next_write()
    else:
        time.sleep(delay)


@pytest.mark.parametrize("method", list(METHODS))
def test_kill_9_at_random_points_then_resume_reproduces_the_run(workspace, tiny_model_dir, forked, one_thread,
                                                                  monkeypatch, capsys, method):
    common = METHODS[method] | {"max_steps": STEPS}
    reference = new_run(workspace, tiny_model_dir, name="reference", save_every=0, **common)
    began = time.monotonic()
    assert train_run(reference) == "finished"
    step_wall = (time.monotonic() - began) / STEPS  # an upper bound on one step (setup included)
    expected = train_losses(reference)
    assert len(expected) == STEPS and len(set(expected)) == STEPS  # a curve that moves: the comparison means something

    run_dir = new_run(workspace, tiny_model_dir, name="killed", **common)
    monkeypatch.setattr(runs, "launch_run", forked.launch)  # resume_run starts forked workers too
    rng = random.Random(f"kill-9-{method}")
    progress = Progress(run_dir)
    gate = CheckpointGate(workspace, monkeypatch)
    pid = forked.launch(run_dir)
    loaded = held = 0
    for trial in range(KILLS):
        aimed_at_checkpoint = trial % 4 == 3
        delay = rng.uniform(0, step_wall)  # drawn every trial: the other trials' delays stay as they were
        kill_when(progress, trial + 1, rng.randint(1, 2), gate if aimed_at_checkpoint else None, delay)
        forked.kill(pid)
        if aimed_at_checkpoint:
            gate.open()
            held += 1
            assert any(p.name.startswith(".tmp-step-") for p in (run_dir / "ckpt").iterdir())  # killed mid-write
        status = read_status(run_dir)
        assert status["state"] == "died", status
        assert [r.state for r in list_runs(workspace) if r.name == "killed"] == ["died"]
        checkpoints = list_checkpoints(run_dir)
        # Only the first kill may come before the first checkpoint (a step is logged, then saved):
        # that resume starts again from step 0.
        assert checkpoints or trial == 0, "later kills always find a checkpoint"
        for folder in checkpoints:
            checkpoint_contents(folder)  # every checkpoint on disk loads
            loaded += 1
        if trial < KILLS - 1:
            pid = resume_run(run_dir)
    assert progress.step < STEPS  # every kill landed before the end: each trial interrupted the run
    assert held == KILLS // 4  # the kills aimed at a checkpoint write each landed inside one

    capsys.readouterr()
    assert main(["--home", str(workspace), "runs", "resume", "killed"]) == 0
    printed = capsys.readouterr()
    assert str(run_dir) in printed.out and "killed: finished" in printed.err
    status = read_status(run_dir)
    assert (status["state"], status["step"]) == ("finished", STEPS)
    assert train_steps(run_dir) == list(range(1, STEPS + 1))
    got = train_losses(run_dir)
    assert got == pytest.approx(expected, abs=1e-5)
    weights_diff = max_difference(final_weights(run_dir), final_weights(reference))
    assert weights_diff <= 1e-5
    events = [r["event"] for r in read_metrics(run_dir) if r["kind"] == "event"]
    assert events.count("resumed") + events.count("started") == KILLS + 1  # one start, then one resume a kill
    assert not [p.name for p in (run_dir / "ckpt").iterdir() if p.name.startswith(".tmp")]  # no staging left over

    SECTION.add(f"kill-{method}", "kill -9 of the worker mid-run", method, KILLS,
                "run reads `died` after every kill; every checkpoint on disk loads (weights, optimizer, scheduler, "
                "RNG, position)")
    SECTION.add(f"resume-{method}", "resume after the kills", method, KILLS,
                f"`finished`; {STEPS} train losses and the final weights equal the uninterrupted run's within 1e-5; "
                "no staging folder left")


def test_kill_9_before_the_first_checkpoint_restarts_with_one_clean_history(workspace, tiny_model_dir, forked,
                                                                             one_thread, monkeypatch):
    from tui_ft.views.run_monitor import RunHistory

    common = METHODS["lora"] | {"max_steps": 6, "save_every": 0}  # no checkpoint before the end
    reference = new_run(workspace, tiny_model_dir, name="reference", **common)
    assert train_run(reference) == "finished"
    run_dir = new_run(workspace, tiny_model_dir, name="early", **common)
    progress = Progress(run_dir)
    pid = forked.launch(run_dir)
    kill_when(progress, 1, 2, None)
    forked.kill(pid)
    assert read_status(run_dir)["state"] == "died" and list_checkpoints(run_dir) == []
    monkeypatch.setattr(runs, "launch_run", forked.launch)
    assert forked.reap(resume_run(run_dir)) == 0  # starts again from step 0
    assert read_status(run_dir)["state"] == "finished"
    assert train_steps(run_dir) == list(range(1, 7))  # the dead worker's steps are not shown twice
    assert train_losses(run_dir) == pytest.approx(train_losses(reference), abs=1e-5)
    history = RunHistory(run_dir)  # the Runs pane's reader applies the same rule
    history.update()
    assert [step for step, _ in history.series[("train", "loss")].points()] == list(range(1, 7))
    SECTION.add("restart-lora", "kill -9 before the first checkpoint", "lora", 1,
                "`died`, no checkpoint; resume starts again from step 0; the history shows steps 1-6 once, "
                "losses equal the uninterrupted run's")


class Killed(BaseException):
    """Stands for SIGKILL inside this process: nothing after it runs (no ``except Exception`` catches it)."""


def test_killed_while_deleting_an_old_checkpoint_leaves_only_loadable_ones(workspace, tiny_model_dir, one_thread,
                                                                            monkeypatch):
    import shutil

    run_dir = new_run(workspace, tiny_model_dir, method="full", lr=1e-3, max_steps=5, keep_checkpoints=2)
    real_rmtree = shutil.rmtree

    def rmtree_then_die(path, *args, **kwargs):
        files = sorted(Path(path).glob("*.pt"))
        if "step-1" in Path(path).name and files:  # pruning step-1 after step-3 is saved
            files[0].unlink()  # the first file is gone when the kill lands
            raise Killed
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree_then_die)
    with pytest.raises(Killed):
        train_run(run_dir)
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    listed = list_checkpoints(run_dir)
    assert [p.name for p in listed][-1] == "step-3"
    for folder in listed:
        checkpoint_contents(folder)  # a half-deleted checkpoint is never listed
    assert train_run(run_dir) == "finished"
    assert sorted(p.name for p in (run_dir / "ckpt").iterdir()) == ["step-3", "step-4"]  # the leftover is gone
    SECTION.add("prune-full", "killed while deleting an old checkpoint", "full", 1,
                "the half-deleted checkpoint is never listed; every listed one loads; the resumed run finishes and "
                "the leftover is removed")


def test_killed_while_writing_the_final_weights_leaves_no_staging_behind(workspace, tiny_model_dir, forked, one_thread):
    from transformers import PreTrainedTokenizerBase

    run_dir = new_run(workspace, tiny_model_dir, method="full", lr=1e-3, max_steps=3)
    real_save = PreTrainedTokenizerBase.save_pretrained

    def die_while_saving(self, *args, **kwargs):
        raise Killed  # the weights are in the staging folder, the tokenizer never gets there

    PreTrainedTokenizerBase.save_pretrained = die_while_saving
    try:
        with pytest.raises(Killed):
            train_run(run_dir)
    finally:
        PreTrainedTokenizerBase.save_pretrained = real_save
    assert [p.name for p in run_dir.glob(".tmp-model-*")] and not (run_dir / "model").exists()
    pid = forked.launch(run_dir)  # another worker (another pid) resumes the run
    assert forked.reap(pid) == 0
    assert read_status(run_dir)["state"] == "finished" and (run_dir / "model" / "model.safetensors").is_file()
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".tmp")) == []
    SECTION.add("final-full", "killed while writing the final weights", "full", 1,
                "no `model/` until it is complete; the next worker finishes the run and removes the half-written "
                "staging folder")
