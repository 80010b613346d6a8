"""Checkpoints on GPU servers, checked on this CPU with torch.cuda stood in for (issue 18, items 2 and 9).

A rank reads its optimizer state straight onto its own device, and saves and restores only its
own GPU's random generator, so a run resumes on fewer GPUs than it was saved with.
"""

from __future__ import annotations

import pytest
import torch

from tui_ft.engine.training import checkpoint
from tui_ft.engine.training.checkpoint import load_checkpoint, load_rng, rng_state, save_checkpoint


class FakeCuda:
    """torch.cuda's generator calls on a machine with ``count`` GPUs, the current one ``current``."""

    def __init__(self, monkeypatch, count: int = 4, current: int = 0):
        self.count, self.current, self.restored = count, current, []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get_rng_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_rng_state)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", self.refuse)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.refuse)

    def get_rng_state(self, device="cuda"):
        index = self._index(device)
        return torch.full((16,), index + 1, dtype=torch.uint8)

    def set_rng_state(self, state, device="cuda"):
        index = self._index(device)
        if index >= self.count:
            raise IndexError(f"no GPU {index}")
        self.restored.append((int(state[0]), index))

    def _index(self, device) -> int:
        if isinstance(device, int):
            return device
        device = torch.device(device)
        return self.current if device.index is None else device.index

    @staticmethod
    def refuse(*_args, **_kwargs):
        raise AssertionError("every GPU's generator was touched, not only this process's own")


def tiny_training_state():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


@pytest.fixture
def loads(monkeypatch):
    """Every torch.load the checkpoint module makes: (file name, map_location); tensors still land on the CPU."""
    seen, real_load = [], torch.load

    def spy(path, *args, map_location=None, **kwargs):
        seen.append((str(path).rsplit("/", 1)[-1], map_location))
        return real_load(path, *args, map_location="cpu", **kwargs)

    monkeypatch.setattr(checkpoint.torch, "load", spy)
    return seen


def test_optimizer_state_is_read_onto_the_ranks_own_device(tmp_path, monkeypatch, loads):
    FakeCuda(monkeypatch, count=2, current=1)
    model, optimizer, scheduler = tiny_training_state()
    ranks = [rng_state("cuda:0"), rng_state("cuda:1")]
    folder = save_checkpoint(tmp_path, model, optimizer, scheduler, {"step": 1}, keep=1, rank_rngs=ranks)
    fresh_model, fresh_optimizer, fresh_scheduler = tiny_training_state()
    load_checkpoint(folder, fresh_model, fresh_optimizer, fresh_scheduler, rank=1, device="cuda:1")
    where = dict(loads)
    assert where["optimizer.pt"] == torch.device("cuda", 1)  # never back onto rank 0's GPU
    assert where["scheduler.pt"] == where["rng.pt"] == where["rng_ranks.pt"] == "cpu"
    loads.clear()
    load_checkpoint(folder, fresh_model, fresh_optimizer, fresh_scheduler, rank=1, device="cuda")
    assert dict(loads)["optimizer.pt"] == torch.device("cuda", 1)  # `cuda` alone: this process's current GPU
    loads.clear()
    load_checkpoint(folder, fresh_model, fresh_optimizer, fresh_scheduler)  # no device: where the weights are
    assert dict(loads)["optimizer.pt"] == torch.device("cpu")
    state, expected = fresh_optimizer.state_dict()["state"][0], optimizer.state_dict()["state"][0]
    assert torch.equal(state["exp_avg"], expected["exp_avg"]) and float(state["step"]) == 1.0


def test_each_rank_saves_and_restores_only_its_own_gpus_generator(tmp_path, monkeypatch):
    cuda = FakeCuda(monkeypatch, count=4)
    model, optimizer, scheduler = tiny_training_state()
    ranks = [rng_state("cuda:0"), rng_state("cuda:1")]
    assert set(ranks[1]) == {"python", "torch", "cuda_device"} and int(ranks[1]["cuda_device"][0]) == 2
    folder = save_checkpoint(tmp_path, model, optimizer, scheduler, {"step": 1}, keep=1, rank_rngs=ranks)
    load_rng(folder, rank=1, device="cuda:1")
    load_rng(folder, rank=0, device="cuda:0")
    assert cuda.restored == [(2, 1), (1, 0)]  # each rank its own state, onto its own GPU
    cuda.restored.clear()
    load_rng(folder, rank=0, device="cpu")  # a CPU run touches no GPU
    assert cuda.restored == []
    assert "cuda_device" not in rng_state("cpu")


def test_a_checkpoint_that_saved_every_gpu_resumes_on_fewer(tmp_path, monkeypatch):
    cuda = FakeCuda(monkeypatch, count=2)
    # Saved before this rule by a process that saw 4 GPUs: every GPU's state, in a list.
    old = {"python": __import__("random").getstate(), "torch": torch.get_rng_state(),
           "cuda": [torch.full((16,), 10 + i, dtype=torch.uint8) for i in range(4)]}
    torch.save(old, tmp_path / "rng.pt")
    load_rng(tmp_path, rank=0, device="cuda:1")
    assert cuda.restored == [(11, 1)]  # its own device's entry; set_rng_state_all would have raised IndexError
    cuda.restored.clear()
    cuda.count = 8
    load_rng(tmp_path, rank=0, device="cuda:6")  # a device the old run never saw: its seeded state stays
    assert cuda.restored == []
