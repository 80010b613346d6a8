"""Training with several processes on one machine, on this CPU with gloo and two processes.

The 2-process runs are real detached runs (the group launcher, two workers) on the tiny model; each is
compared with one in-process run of the same global batch: the loss curve must match to float
tolerance, through a stop, a resume, and a rank that is killed.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from tui_ft.engine.runs import create_run, launch_run, list_checkpoints, read_metrics, read_status, resume_run, stop_run
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.config_checks import validate_config
from tui_ft.engine.runs.group_launcher import RankFailure, failure_message, loopback_interface, rank_env
from tui_ft.engine.training.distributed import Group, shard
from tui_ft.engine.training.trainer import train_run

from polling import wait_for

# Full fine-tuning (every weight moves, so a wrong gradient shows) without dropout. The global
# batch of 4 splits into 2 + 2; 17 training examples leave a last batch of one, so once an
# epoch rank 1 has nothing and runs a zero-weighted example; two micro-batches a step exercise
# accumulation without communication; the 3 held-out examples split 2 + 1. 40 steps at about
# 0.2 s leave time to stop mid-run.
COMMON = dict(dataset="datasets/seed_instructions_20.jsonl", method="full", lr=1e-3, max_steps=40, batch_size=4,
              grad_accum=2, eval_split=0.15, eval_every=10, save_every=0, seed=7, warmup_ratio=0.0)
RANK_LINE = re.compile(r"worker pid (\d+): rank (\d+) of (\d+) \(local rank \d+\) on (\w+) with (\w+)")


def train_records(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir) if r["kind"] == "train"]


def rank_lines(run_dir: Path) -> list[tuple[int, int, int, str, str]]:
    """(pid, rank, world, device, backend) of every rank start logged in worker.log, in order."""
    text = (run_dir / "worker.log").read_text()
    return [(int(p), int(r), int(w), d, b) for p, r, w, d, b in RANK_LINE.findall(text)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    """One process, the same global batch, 40 steps: the curve every 2-process run must follow."""
    import shutil

    import torch

    from conftest import REPO

    home = tmp_path_factory.mktemp("reference")
    shutil.copytree(REPO / "datasets", home / "datasets")
    run_dir = create_run(TrainConfig(model=str(tiny_model_dir), name="one", **COMMON), home)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_run(run_dir) == "finished"
    finally:
        torch.set_num_threads(threads)
    return run_dir


def test_shards_cover_each_global_batch_once_in_order():
    for size in range(0, 11):
        indices = list(range(100, 100 + size))
        for world in (1, 2, 3, 4):
            parts = [shard(indices, Group(rank, world)) for rank in range(world)]
            assert sum(parts, []) == indices
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shard([5, 6, 7, 8, 9, 10], Group(1, 2)) == [8, 9, 10]


def test_multi_process_settings_are_checked(workspace, tiny_model_dir):
    def problems(**values):
        config = TrainConfig(model=str(tiny_model_dir), dataset="datasets/seed_instructions.jsonl", **values)
        found = {}
        for field, message in validate_config(config, workspace):
            found[field] = f"{found.get(field, '')} {message}".strip()
        return found

    assert problems(nproc=2, batch_size=4) == {}
    assert "multiple of nproc (2)" in problems(nproc=2, batch_size=3)["batch_size"]
    assert "own GPU" in problems(nproc=2, batch_size=4, device="cuda:1")["device"]
    assert "method full" in problems(nproc=2, batch_size=4, fsdp=True)["fsdp"]
    assert "2 or more" in problems(method="full", fsdp=True)["fsdp"]
    assert problems(method="full", nproc=2, batch_size=4, fsdp=True) == {}


def failure(exitcode: int, timestamp: int = 100, signal_name: str = ""):
    return SimpleNamespace(exitcode=exitcode, timestamp=timestamp, signal_name=lambda: signal_name)


def test_the_failed_rank_is_named_not_the_ranks_that_lost_contact_with_it():
    running, failed = {"state": "running"}, {"state": "failed", "message": "the loss became nan at step 3"}
    # Rank 1 was killed; rank 0 then lost contact (exit 3) in the same second, or gloo aborted it.
    assert failure_message({0: failure(3), 1: failure(-9, signal_name="SIGKILL")}, failed).startswith(
        "rank 1 died: killed by SIGKILL")
    assert failure_message({0: failure(-6, signal_name="SIGABRT"), 1: failure(-9, signal_name="SIGKILL")},
                           failed).startswith("rank 1 died")
    # Rank 2 raised first; rank 0's message was only the symptom.
    assert failure_message({0: failure(3, 101), 2: failure(1, 100)}, failed).startswith("rank 2 failed with exit code 1")
    # Rank 0 failed on its own (non-finite loss) and said why: its message stands.
    assert failure_message({0: failure(1)}, failed) is None
    assert failure_message({0: failure(1)}, running).startswith("rank 0 failed with exit code 1")
    # The launcher's own records read the same way.
    assert failure_message({0: RankFailure(3, 100), 1: RankFailure(-9, 100)}, failed).startswith(
        "rank 1 died: killed by SIGKILL")


def test_a_rank_that_said_why_it_failed_is_named_with_its_reason():
    oom = "out of memory: try a smaller --batch-size or a shorter --max-length (at step 3; there is no checkpoint yet)"
    running = {"state": "running"}
    # Rank 1 ran out of memory and exited 1; rank 0 only lost contact with it.
    message = failure_message({0: failure(3), 1: failure(1)}, running, {1: oom})
    assert message.startswith(f"rank 1 failed: {oom}; every rank stopped"), message
    # Rank 0's exit was seen first (rank 1 was still exiting): rank 1's reason is still the cause.
    assert failure_message({0: failure(3)}, running, {1: oom}).startswith("rank 1 failed: out of memory")
    assert failure_message({0: failure(-6, signal_name="SIGABRT")}, running, {1: oom}).startswith("rank 1 failed: out")
    # A failure every rank met at once: rank 0's message stands, whichever exit was seen first.
    nan = "the loss became nan at step 3; there is no checkpoint yet"
    failed = {"state": "failed", "message": nan}
    assert failure_message({1: failure(1)}, failed, {0: nan, 1: nan}) is None
    # Without a reason the exit code is all there is.
    assert failure_message({1: failure(1)}, running, {}).startswith("rank 1 failed with exit code 1")


def test_ranks_on_one_machine_meet_through_a_private_file_store_on_loopback(tmp_path, monkeypatch):
    monkeypatch.setenv("MASTER_PORT", "29500")  # a torchrun around the caller is not our rendezvous
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "outer")
    env = rank_env(1, 2, tmp_path / "store", loopback_interface())
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"]) == ("1", "1", "2")
    assert env["TUI_FT_INIT_METHOD"] == f"file://{tmp_path / 'store'}"
    assert env["GLOO_SOCKET_IFNAME"] == env["NCCL_SOCKET_IFNAME"] == loopback_interface()
    assert any(a.address.startswith("127.") for a in psutil.net_if_addrs()[loopback_interface()])
    assert "MASTER_PORT" not in env and "TORCHELASTIC_RUN_ID" not in env


def test_two_processes_follow_the_one_process_curve_through_stop_resume_and_a_killed_rank(
        workspace, tiny_model_dir, reference, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # Activation checkpointing on, the reference without it: recomputation must not change a loss.
    run_dir = create_run(TrainConfig(model=str(tiny_model_dir), name="two", nproc=2, gradient_checkpointing=True,
                                     **COMMON), workspace)
    launcher_pid = launch_run(run_dir)
    wait_for(lambda: read_status(run_dir)["step"] >= 3, "steps of the 2-process run")
    status = read_status(run_dir)
    # The run's pid is the group launcher's, the parent of both ranks: `died` is judged on it.
    assert status["pid"] == launcher_pid
    started = rank_lines(run_dir)
    assert sorted((r, w, d, b) for _, r, w, d, b in started) == [(0, 2, "cpu", "gloo"), (1, 2, "cpu", "gloo")]
    assert all(psutil.Process(pid).ppid() == launcher_pid for pid, *_ in started)

    stop_run(run_dir)
    status = wait_for(lambda: (s := read_status(run_dir))["state"] in ("stopped", "failed", "died") and s, "the stop")
    assert status["state"] == "stopped", status
    stopped_at = status["step"]
    assert 3 <= stopped_at < 40
    assert [p.name for p in list_checkpoints(run_dir)] == [f"step-{stopped_at}"]
    wait_for(lambda: not psutil.pid_exists(launcher_pid) or psutil.Process(launcher_pid).status() == psutil.STATUS_ZOMBIE,
             "the group launcher to exit after the stop", timeout=30)

    resume_run(run_dir)
    # Past the evaluation at step 10 (held-out batch split 2 + 1) before the kill.
    wait_for(lambda: read_status(run_dir)["step"] >= max(stopped_at + 3, 11), "steps after the resume")
    rank1 = [pid for pid, rank, *_ in rank_lines(run_dir) if rank == 1][-1]
    os.kill(rank1, signal.SIGKILL)
    status = wait_for(lambda: (s := read_status(run_dir))["state"] in ("failed", "died") and s, "the failure")
    assert status["state"] == "failed" and status["message"].startswith("rank 1 died: killed by SIGKILL"), status

    assert len(rank_lines(run_dir)) == 4  # two starts of two ranks
    raw = [r for r in _raw_records(run_dir) if r["kind"] == "train"]
    steps = [r["step"] for r in raw]
    assert steps == list(range(1, len(steps) + 1))  # one stream: no step logged twice, none missing
    assert len(steps) >= stopped_at + 3
    expected = {r["step"]: r for r in train_records(reference)}
    for record in raw:
        assert record["loss"] == pytest.approx(expected[record["step"]]["loss"], rel=1e-5), record["step"]
        assert record["tokens"] == expected[record["step"]]["tokens"]  # both ranks' tokens, summed
    assert len({round(r["loss"], 4) for r in raw}) > 3  # the curve moves: the comparison means something
    assert reference_epochs_end_with_a_single_example(reference)
    evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
    expected_evals = {r["step"]: r["loss"] for r in read_metrics(reference) if r["kind"] == "eval"}
    assert evals and all(r["loss"] == pytest.approx(expected_evals[r["step"]], rel=1e-5) for r in evals)
    events = [r["event"] for r in read_metrics(run_dir) if r["kind"] == "event"]
    assert events[:3] == ["started", "checkpoint", "stopped"] and events[3:5] == ["resumed", "failed"]


def test_out_of_memory_on_rank_1_fails_the_run_with_the_advice_instead_of_hanging(workspace, tiny_model_dir, monkeypatch):
    from tui_ft.engine.runs.worker import read_rank_errors

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TUI_FT_TEST_FAULT", "1:3:oom")  # rank 1 alone raises torch.OutOfMemoryError at step 3
    run_dir = create_run(TrainConfig(model=str(tiny_model_dir), name="oom", nproc=2, **COMMON), workspace)
    launcher_pid = launch_run(run_dir)
    status = wait_for(lambda: (s := read_status(run_dir))["state"] in ("failed", "died", "finished") and s,
                      "the run to end after rank 1 ran out of memory", timeout=240)
    assert status["state"] == "failed", status
    assert status["message"].startswith("rank 1 failed: out of memory: try a smaller --batch-size"), status
    assert "at step 3" in status["message"] and "--method lora" in status["message"]
    assert read_rank_errors(run_dir).keys() == {1}  # rank 0 only lost contact: it wrote no reason
    assert status["step"] == 2  # no step after the failure
    wait_for(lambda: not psutil.pid_exists(launcher_pid) or psutil.Process(launcher_pid).status() == psutil.STATUS_ZOMBIE,
             "the group launcher to exit", timeout=60)
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(run_dir) in " ".join(p.info["cmdline"] or [])]
    log = (run_dir / "worker.log").read_text()
    assert "rank 1 failed: out of memory" in log and "injected: CUDA out of memory on rank 1" in log
    failed = [r for r in read_metrics(run_dir) if r.get("event") == "failed"]
    assert len(failed) == 1 and failed[0]["message"].startswith("rank 1 failed: out of memory")


def reference_epochs_end_with_a_single_example(run_dir: Path) -> bool:
    """True when the run trained on 17 examples (batches of 4, 4, 4, 4, 1)."""
    started = next(r for r in read_metrics(run_dir) if r.get("event") == "started")
    return started["examples"] == 17 and started["examples"] % 4 == 1


def _raw_records(run_dir: Path) -> list[dict]:
    """metrics.jsonl as written, without the de-duplication readers apply after a resume."""
    import orjson

    return [orjson.loads(line) for line in (run_dir / "metrics.jsonl").read_bytes().splitlines() if line.strip()]


@pytest.mark.e2e  # two more 2-process launches (30-70 s on this shared 2-core machine)
def test_fsdp_run_resumes_from_sharded_checkpoints_and_saves_the_full_weights(
        workspace, tiny_model_dir, reference, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_dir = create_run(TrainConfig(model=str(tiny_model_dir), name="sharded", nproc=2, fsdp=True,
                                     gradient_checkpointing=True, **COMMON), workspace)
    launch_run(run_dir)
    wait_for(lambda: read_status(run_dir)["step"] >= 3, "steps of the FSDP run")
    stop_run(run_dir)
    status = wait_for(lambda: (s := read_status(run_dir))["state"] in ("stopped", "failed", "died") and s, "the stop")
    assert status["state"] == "stopped", status
    checkpoint = list_checkpoints(run_dir)[-1]
    assert {".metadata", "__0_0.distcp", "__1_0.distcp", "rng_ranks.pt"} <= {p.name for p in checkpoint.iterdir()}
    assert not (checkpoint / "trainable.safetensors").exists()  # each rank wrote its own shard, none the whole

    wait_for(lambda: read_status(run_dir)["state"] != "stopping" and _torchrun_gone(run_dir), "torchrun to exit")
    resume_run(run_dir)
    status = wait_for(lambda: (s := read_status(run_dir))["state"] in ("finished", "failed", "died") and s,
                      "the resumed run to finish")
    assert status["state"] == "finished", status
    got, expected = train_records(run_dir), train_records(reference)
    assert [r["step"] for r in got] == list(range(1, 41))
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in expected], rel=1e-5)
    mine, theirs = load_file(run_dir / "model" / "model.safetensors"), load_file(reference / "model" / "model.safetensors")
    assert set(mine) == set(theirs)  # the tied head is saved once, as one process saves it
    assert max(float((mine[k] - theirs[k]).abs().max()) for k in theirs) < 1e-5


def _torchrun_gone(run_dir: Path) -> bool:
    pid = read_status(run_dir).get("pid")
    return not pid or not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_collectives_wait_an_hour_for_the_slowest_rank_unless_told_otherwise(monkeypatch):
    import datetime

    import torch.distributed as dist

    from tui_ft.engine.training.distributed import collective_timeout, join_group

    assert collective_timeout() == datetime.timedelta(minutes=60)
    monkeypatch.setenv("TUI_FT_COLLECTIVE_TIMEOUT_MIN", "90")
    assert collective_timeout() == datetime.timedelta(minutes=90)
    for bad in ("soon", "0", "-5"):
        monkeypatch.setenv("TUI_FT_COLLECTIVE_TIMEOUT_MIN", bad)
        assert collective_timeout() == datetime.timedelta(minutes=60)
    monkeypatch.setenv("TUI_FT_COLLECTIVE_TIMEOUT_MIN", "7.5")
    calls = []
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kwargs: calls.append((backend, kwargs)))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.delenv("TUI_FT_INIT_METHOD", raising=False)
    assert join_group("cpu") == Group(1, 2, 1, "cpu", "gloo")  # torchrun's env:// rendezvous
    monkeypatch.setenv("TUI_FT_INIT_METHOD", "file:///nowhere/store")
    join_group("cpu")  # the group launcher's file store
    assert [kwargs["timeout"] for _, kwargs in calls] == [datetime.timedelta(minutes=7.5)] * 2
    assert calls[1][1]["init_method"] == "file:///nowhere/store"


def test_a_process_on_gpu_n_makes_it_its_current_device(monkeypatch):
    import torch

    from tui_ft.engine.training.distributed import claim_device

    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for device in ("cuda:3", "cuda", "cpu", "cuda:0"):
        claim_device(device)
    assert chosen == [3, 0]  # `cuda` alone keeps the current device


def test_dpo_ranks_share_the_reference_pass_and_get_one_process_values(workspace, tiny_model_dir, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    dpo = dict(dataset="datasets/dpo_concise.jsonl", method="dpo", max_steps=2, batch_size=4, eval_split=0.2,
               save_every=0, seed=3, lr=5e-4, lora_dropout=0.0)  # no dropout: the ranks draw other masks
    one = create_run(TrainConfig(model=str(tiny_model_dir), name="dpo-one", **dpo), workspace)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_run(one) == "finished"
    finally:
        torch.set_num_threads(threads)
    two = create_run(TrainConfig(model=str(tiny_model_dir), name="dpo-two", nproc=2, **dpo), workspace)
    launch_run(two)
    status = wait_for(lambda: (s := read_status(two))["state"] in ("finished", "failed", "died") and s, "the DPO run")
    assert status["state"] == "finished", status
    mine, theirs = load_file(two / "reference_logps.safetensors"), load_file(one / "reference_logps.safetensors")
    assert set(mine) == set(theirs) == {"train", "eval"}
    for name in theirs:
        assert mine[name].shape == theirs[name].shape and bool((theirs[name] < 0).all())
        assert torch.allclose(mine[name], theirs[name], rtol=1e-5, atol=1e-4), name
    shares = re.findall(r"rank (\d): reference log-probabilities of (\d+) of (\d+) pairs", (two / "worker.log").read_text())
    for name, pairs in (("train", len(theirs["train"])), ("eval", len(theirs["eval"]))):
        counts = {int(rank): int(count) for rank, count, total in shares if int(total) == pairs}
        assert set(counts) == {0, 1} and sum(counts.values()) == pairs and min(counts.values()) > 0, (name, shares)
    losses = [r["loss"] for r in train_records(two)]
    assert losses == pytest.approx([r["loss"] for r in train_records(one)], rel=1e-4)


def _fsdp_bf16_rank(rank: int, store: str, model_dir: str, found: dict) -> None:
    """One rank: the tiny model sharded as a bf16 run shards it, one forward and backward."""
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    from tui_ft.engine.training.parallel_model import wrap_for_training

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        seen = []
        layer = model.model.layers[0].self_attn.q_proj
        layer.register_forward_pre_hook(lambda module, args: seen.append((module.weight.dtype, args[0].dtype)))
        step = wrap_for_training(model, Group(rank, 2, rank, "cpu", "gloo"), True, "bf16")

        class Whole:
            def forward(self, model, batch):
                return model(**batch).logits.float().sum()

        step(Whole(), {"input_ids": torch.tensor([[1, 2, 3, 4]])}).backward()
        grads = {p.grad.dtype for p in model.parameters() if p.grad is not None}
        stored = {p.dtype for p in model.parameters()}
        found[rank] = (seen, grads, stored)
    finally:
        dist.destroy_process_group()


def test_fsdp_gathers_bf16_weights_and_reduces_fp32_gradients_in_a_bf16_run(tmp_path, tiny_model_dir):
    import torch
    import torch.multiprocessing as mp

    from tui_ft.engine.training.parallel_model import fsdp_precision, no_buffer_sync

    assert fsdp_precision("fp32") == {}
    policy = fsdp_precision("bf16")["mp_policy"]
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    with mp.Manager() as manager:
        found = manager.dict()
        mp.start_processes(_fsdp_bf16_rank, args=(str(tmp_path / "store"), str(tiny_model_dir), found), nprocs=2,
                           start_method="spawn")
        found = dict(found)
    for rank in (0, 1):
        seen, grads, stored = found[rank]
        assert seen and seen[0] == (torch.bfloat16, torch.bfloat16)  # the layer computes on bf16 gathered weights
        assert grads == stored == {torch.float32}  # sharded weights and their reduced gradients stay fp32

    class OldDDP:
        def __init__(self, module, broadcast_buffers=True):
            pass

    class NewDDP:
        def __init__(self, module, broadcast_buffers=None, forward_sync_buffers=None):
            pass

    assert no_buffer_sync(OldDDP) == {"broadcast_buffers": False}  # torch before forward_sync_buffers
    assert no_buffer_sync(NewDDP) == {"forward_sync_buffers": False}


def test_create_only_makes_a_run_for_torchrun_without_starting_it(workspace, tiny_model_dir, capsys):
    from tui_ft.cli import main

    code = main(["--home", str(workspace), "train", "--model", str(tiny_model_dir), "--dataset",
                 "datasets/seed_instructions.jsonl", "--method", "lora", "--nproc", "2", "--batch-size", "4",
                 "--name", "later", "--create-only"])
    assert code == 0
    out, err = capsys.readouterr()
    run_dir = Path(out.strip())
    assert run_dir == workspace / "checkpoints" / "later"
    assert f"-m tui_ft.engine.worker {run_dir}" in err
    assert read_status(run_dir)["state"] == "queued" and read_status(run_dir)["pid"] is None
    assert not (run_dir / "worker.log").exists()
    assert main(["--home", str(workspace), "train", "--model", str(tiny_model_dir), "--dataset",
                 "datasets/seed_instructions.jsonl", "--method", "lora", "--nproc", "2", "--batch-size", "3"]) == 2
    assert "multiple of nproc (2)" in capsys.readouterr().err
