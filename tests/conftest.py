"""Shared fixtures: the default model (converted once per machine) and a tiny random model.

The tiny model is a 2-layer Llama with the default model's tokenizer, built in the test
session: engine tests run in seconds on the CPU and need no download.

The suite is written for the CPU. On a GPU server CUDA is hidden (``CUDA_VISIBLE_DEVICES=""``,
for this process and every process it starts) from any session that runs tests not marked
``gpu``: a CUDA context cannot be taken back once opened, so one session cannot show CUDA to
some tests and hide it from others. The ``gpu`` tests (``tests/gpu``) run in a session of
their own, ``pytest -m gpu`` or ``pytest tests/gpu``, and are skipped where there is no CUDA.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

# As the CLI does: OpenMP threads that spin crawl when tests and workers share the CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Chat decodes with the lean decoder, as before the per-machine probe: what a probe picks on a
# shared machine is not repeatable (tests/engine/test_decode_path.py tests the probe itself).
os.environ["TUI_FT_DECODE"] = "lean"

import pytest

REPO = Path(__file__).resolve().parent.parent
GPU_TESTS = REPO / "tests" / "gpu"
UI_TESTS = REPO / "tests" / "ui"
CUDA_HIDDEN = "CUDA is hidden from a session that runs tests not marked gpu: run `pytest -m gpu` (or tests/gpu) on its own"


def gpu_only_session(config) -> bool:
    """True when the command line selects only ``gpu`` tests: ``-m gpu`` (``-m "gpu and ..."``) or paths in tests/gpu."""
    marks = (config.option.markexpr or "").strip()
    if marks == "gpu" or marks.startswith("gpu and "):
        return True
    paths = [Path(config.invocation_params.dir, arg.split("::")[0]).resolve() for arg in config.args]
    return bool(paths) and all(path == GPU_TESTS or GPU_TESTS in path.parents for path in paths)


def pytest_configure(config):
    config.cuda_hidden = not gpu_only_session(config)
    if config.cuda_hidden:
        # Before any test module imports torch, so no CUDA call can have read the old value.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def pytest_collection_modifyitems(config, items):
    # `make test` runs two pytest-xdist workers (--dist loadgroup). The dashboard tests share
    # fixed workspace paths (their snapshots show them) under one lock: they go to one worker,
    # one after another, while the other worker runs the rest.
    for item in items:
        if UI_TESTS in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.xdist_group("dashboard"))
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    if config.cuda_hidden:
        reason = CUDA_HIDDEN
    else:
        import torch

        reason = None if torch.cuda.is_available() else "needs CUDA (no CUDA device here)"
    for item in gpu_items:
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The converted default model folder (SmolLM2-135M-Instruct)."""
    from tui_ft.engine.models import ensure_default_model

    return ensure_default_model()


def build_tiny_model(folder: Path, tokenizer_source: Path, seed: int = 0, layers: int = 2) -> Path:
    """Save a tiny random-weight Llama with ``tokenizer_source``'s tokenizer into ``folder``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (tokenizer_source / name).is_file():
            shutil.copy(tokenizer_source / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_model_path) -> Path:
    """A tiny random Llama model folder (read-only: copy it before changing it)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", default_model_path)


@pytest.fixture(scope="session")
def tokenizer(default_model_path):
    """The default model's tokenizer."""
    from tui_ft.engine.models import load_tokenizer

    return load_tokenizer(default_model_path)


@pytest.fixture
def reap():
    """Kill the workers a test started (give their pids to it) if the test fails before they end.

    Only a process that is still the one given (the same start time): a worker that ended has
    its pid reused, and under xdist that can be the other worker's process (an evaluation job
    died with no traceback that way, SIGKILLed by this fixture of another test).
    """
    import os
    import signal

    from tui_ft.engine.processes import start_time

    started = []
    yield lambda pid: started.append((pid, start_time(pid)))
    for pid, when in started:
        if when is None or start_time(pid) != when:
            continue  # gone, or another process by now
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def one_torch_thread():
    """One torch thread: the tiny model gains nothing from more, and the CPU is shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def workspace(tmp_path) -> Path:
    """An empty workspace with the shipped datasets copied in."""
    shutil.copytree(REPO / "datasets", tmp_path / "datasets")
    (tmp_path / "checkpoints").mkdir()
    return tmp_path


UI_HOME = Path("/tmp/tui_ft_ui_workspace")


@pytest.fixture
def ui_home(default_model_path) -> Path:
    """A fresh workspace with the shipped datasets, always at the same path (snapshots show it)."""
    shutil.rmtree(UI_HOME, ignore_errors=True)
    shutil.copytree(REPO / "datasets", UI_HOME / "datasets")
    (UI_HOME / "checkpoints").mkdir()
    return UI_HOME


@pytest.fixture(autouse=True)
def steady_dashboard(request, monkeypatch):
    """Dashboard tests (tests/ui) start with no pane built in the background and no GPU.

    The dashboard builds its other panes a moment after the first paint (``PREBUILT_MODES``):
    in a test, that switch-and-back would land at a time that depends on the machine's speed,
    and snapshots and focus checks would vary (tests/ui/test_shell.py tests the building).
    The Train pane starts its Processes field at every visible GPU: pinned at none, so the form
    and its snapshots read the same on a GPU server. The heap is not frozen: pytest runs many
    apps in one process, and frozen apps would never be collected (tests/ui/test_pane_switch.py
    tests the freezing). Each holds the lock of the fixed workspace paths while it runs.
    (One conftest for all tests: test modules import from it by name.)
    """
    if "ui" not in Path(str(request.node.path)).relative_to(REPO / "tests").parts[:1]:
        yield
        return
    from tui_ft.ui.app import TuiFtApp

    monkeypatch.setattr(TuiFtApp, "PREBUILT_MODES", ())
    monkeypatch.setattr(TuiFtApp, "FREEZE_HEAP_EVERY_S", None)
    monkeypatch.setattr("tui_ft.engine.models.devices.visible_gpu_count", lambda: 0)
    monkeypatch.setenv("TUI_FT_MEMORY_CAPACITY_BYTES", str(24 * 10**9))  # the Train form's plan line reads the same anywhere
    with fixed_paths_lock():
        yield


@contextmanager
def fixed_paths_lock():
    """Hold the machine-wide lock of the dashboard tests' fixed workspaces (``/tmp/tui_ft_ui_*``).

    Snapshots show the workspace path, so dashboard tests use one fixed path each, emptied at
    the start of a test: a second suite on the machine (another checkout's ``make test``) waits
    for the lock instead of emptying a workspace under a running test.
    """
    import fcntl

    with open(UI_HOME.with_name("tui_ft_ui_tests.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
