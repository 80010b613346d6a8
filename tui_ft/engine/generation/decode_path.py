"""Which way of decoding is fastest for this model on this machine: measured once, then remembered.

CPUs differ in what is fast. Our lean decoder (``fast_cpu.llama_decoder``) beat transformers'
forward by 1.1–1.4× on a 2-core AVX-512 Xeon, but a user measured it slower than
``generate()`` on another; two threads beat one on an idle machine and lost to one on a busy
one. So the path is not assumed: the first time a model is loaded for chat on a machine, a
short probe times a few decoding steps of each candidate (the lean decoder or transformers'
forward, at one thread or at torch's default count), round-robin, and the fastest median wins.

The choice is stored in the model cache (``decode_paths.json``) under a key naming the CPU (its
model name and the flags that pick kernels: AMX, AVX512_BF16, AVX-512, AVX2, and the
``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` overrides), torch's version, the thread budget,
and the model (folder, adapter, dtype): another CPU or a new torch measures again. Prompt
lookup is not probed: it never changes the output and only runs where it saves passes.

``TUI_FT_DECODE=lean`` or ``=transformers`` skips the probe and uses that decoder at torch's
thread count (the test suite pins ``lean``: a probe's choice on a shared machine is not
repeatable, and tests compare paths on purpose).
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from tui_ft.engine.files import read_json, write_json_atomic

PATHS_FILE = "decode_paths.json"
PIN_ENV = "TUI_FT_DECODE"  # lean | transformers: no probe
MAX_REMEMBERED = 64  # machine × model entries kept; the oldest go first
PROBE_STEPS = 6  # timed decoding steps per candidate and round (after one untimed step)
PROBE_ROUNDS = 2
PROBE_PROMPT = 48  # tokens: a short chat prompt's prefill
KERNEL_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx512_vnni", "avx2", "fma")


@dataclass(frozen=True)
class DecodePath:
    """How replies are decoded.

    Attributes:
        lean: Our lean Llama decoder (else transformers' forward with a ``DynamicCache``).
        threads: torch's thread count while decoding.
        how: ``probed`` (measured now), ``remembered`` (measured before on this machine),
            ``asked`` (threads given by the user) or ``fixed`` (nothing to choose: a GPU, one core).
        speeds: Tokens per second of each candidate when probed, by its label.
    """

    lean: bool
    threads: int
    how: str = "fixed"
    speeds: tuple[tuple[str, float], ...] = ()

    @property
    def label(self) -> str:
        """``lean decoder, 2 threads`` or ``transformers forward, 1 thread``."""
        return f"{'lean decoder' if self.lean else 'transformers forward'}, {self.threads} thread{'s' * (self.threads != 1)}"

    def describe(self) -> str:
        """The label and how it was chosen, with the measured speeds (what ``--stats`` prints)."""
        text = f"{self.label} ({self.how}"
        if self.speeds:
            text += ": " + ", ".join(f"{label} {rate:.1f}" for label, rate in self.speeds) + " tokens/s"
        return text + ")"


def cpu_identity() -> dict:
    """The CPU as far as kernels care: its model name, the flags that select kernels, the overrides."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux: the platform's name is what we have
        import platform

        name = platform.processor() or platform.machine()
    overrides = {key: os.environ.get(key, "") for key in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    return {"cpu": name, "flags": sorted(flags & set(KERNEL_FLAGS)), **overrides}


def path_key(model_key: str, threads: int) -> str:
    """The cache key of a model on this machine with ``threads`` threads available."""
    import torch

    identity = cpu_identity() | {"torch": torch.__version__, "threads": threads, "model": model_key}
    return hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20]


def candidates(lean_ok: bool, threads: int, threads_asked: bool) -> list[DecodePath]:
    """Every path worth timing: lean or not (when the model allows), one thread or ``threads``."""
    counts = [threads] if threads_asked else sorted({1, threads})
    return [DecodePath(lean, count) for lean in ((True, False) if lean_ok else (False,)) for count in counts]


def probe(model, paths: list[DecodePath], prompt_ids: list[int]) -> dict[DecodePath, float]:
    """Tokens per second of each path: the median over rounds of ``PROBE_STEPS`` greedy steps, EOS ignored."""
    import torch

    from tui_ft.engine.generation.sampling import GenerationSettings
    from tui_ft.engine.generation.token_loop import generate_token_ids

    settings = GenerationSettings(max_new_tokens=PROBE_STEPS + 1)
    rates: dict[DecodePath, list[float]] = {path: [] for path in paths}
    before = torch.get_num_threads()
    try:
        for _ in range(PROBE_ROUNDS):  # round-robin: a burst of load elsewhere hits every path alike
            for path in paths:
                torch.set_num_threads(path.threads)
                tokens = generate_token_ids(model, prompt_ids, settings, eos_ids=set(), lean=path.lean, lookup=False)
                next(tokens)  # prefill and the first token: not decoding speed
                start = time.perf_counter()
                steps = sum(1 for _ in tokens)
                rates[path].append(steps / max(time.perf_counter() - start, 1e-9))
    finally:
        torch.set_num_threads(before)
    return {path: statistics.median(values) for path, values in rates.items()}


def choose_decode_path(model, model_key: str, cache_dir: Path | None, threads: int | None = None) -> DecodePath:
    """The fastest way to decode ``model`` here: remembered, else probed now (a few seconds) and remembered.

    Args:
        model: The loaded model, in eval mode.
        model_key: What identifies its weights and dtype (folder, adapter, dtype).
        cache_dir: Where ``decode_paths.json`` lives (``None``: probe, remember nothing).
        threads: Threads the user asked for (``--threads``): only the decoder is chosen then.
    """
    import torch

    from tui_ft.engine.generation.fast_cpu.llama_decoder import supports_lean_decoding

    device = next(model.parameters()).device
    lean_ok = supports_lean_decoding(model)
    if device.type != "cpu":
        return DecodePath(lean_ok, torch.get_num_threads())
    budget = threads or torch.get_num_threads()
    pinned = os.environ.get(PIN_ENV, "").strip()
    if pinned in ("lean", "transformers"):
        return DecodePath(lean_ok and pinned == "lean", budget, f"{PIN_ENV}={pinned}")
    paths = candidates(lean_ok, budget, threads is not None)
    if len(paths) == 1:
        return DecodePath(paths[0].lean, paths[0].threads, "asked" if threads else "fixed")
    key = path_key(model_key, budget)
    store = Path(cache_dir) / PATHS_FILE if cache_dir is not None else None
    remembered = _entries(store).get(key) if store is not None else None
    if isinstance(remembered, dict) and any(remembered.get("lean") == p.lean and remembered.get("threads") == p.threads
                                            for p in paths):
        speeds = tuple((str(label), float(rate)) for label, rate in remembered.get("speeds", []))
        return DecodePath(bool(remembered["lean"]), int(remembered["threads"]), "remembered", speeds)
    vocab = int(getattr(model.config, "vocab_size", 1000) or 1000)
    prompt = [(17 * i + 11) % vocab for i in range(PROBE_PROMPT)]  # fixed, arbitrary ids: only the time matters
    rates = probe(model, paths, prompt)
    best = max(paths, key=rates.__getitem__)
    speeds = tuple((path.label, round(rates[path], 1)) for path in paths)
    chosen = DecodePath(best.lean, best.threads, "asked" if threads else "probed", speeds)
    if store is not None:
        _remember(store, key, chosen)
    return chosen


def _entries(store: Path) -> dict:
    entries = read_json(store)
    return entries if isinstance(entries, dict) else {}  # missing, damaged or not ours: measure again


def _remember(store: Path, key: str, path: DecodePath) -> None:
    entries = _entries(store)
    entries.pop(key, None)
    entries[key] = asdict(path) | {"how": "probed", "measured": time.time()}
    while len(entries) > MAX_REMEMBERED:
        entries.pop(next(iter(entries)))
    try:
        write_json_atomic(store, entries, parents=True)
    except OSError:  # a read-only cache: the choice holds for this process only
        pass
