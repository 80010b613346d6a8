"""Headless helpers for watching runs: table rows, metric series, downsampling, worker usage.

The dashboard's Runs pane polls these from a background thread about once a second, so each
is cheap: status files are small, ``metrics.jsonl`` is read incrementally (the pane keeps a
:class:`~tui_ft.engine.runs.folder.MetricsTail` per watched run) or only from its end
(:func:`last_record`), and nothing here imports torch.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from tui_ft.engine.files import read_json, read_tail
from tui_ft.engine.runs import RunInfo, list_runs
from tui_ft.engine.runs.folder import LOG_FILE, METRICS_FILE, STATUS_FILE, MetricsTail
from tui_ft.engine.runs.state import RunState

TAIL_BYTES = 16384  # enough for the last records of metrics.jsonl or a screen of worker.log


@dataclass
class RunRow:
    """One run as the Runs table shows it.

    Attributes:
        info: The engine's view of the run (state reads ``died`` for a dead worker).
        eta_s: Seconds left, from the worker's recent step times (``None`` when unknown).
        last_loss: The loss of the last ``train`` record (``None`` before the first step).
    """

    info: RunInfo
    eta_s: float | None
    last_loss: float | None

    @property
    def progress(self) -> float | None:
        """Fraction of the steps done, in [0, 1] (``None`` while the total is unknown)."""
        total = self.info.total_steps
        if not total:
            return None
        return min(1.0, max(0.0, self.info.step / total))


def run_rows(home: Path) -> list[RunRow]:
    """Every run of workspace ``home`` with its ETA and last train loss, oldest first."""
    rows = []
    for info in list_runs(home):
        status = read_json(info.path / STATUS_FILE)
        eta = status.get("eta_s") if info.state in (RunState.RUNNING, RunState.STOPPING) else None
        last = last_record(info.path / METRICS_FILE, "train")
        rows.append(RunRow(info, eta if isinstance(eta, (int, float)) else None, _number(last, "loss")))
    return rows


def run_matches(info: RunInfo, text: str) -> bool:
    """True when every word of ``text`` is in the run's name, state, method, model or dataset file name (any case).

    The Runs pane's ``/`` filter and ``tui-ft runs --filter`` both use it. An empty text matches all.
    """
    haystack = " ".join((info.name, info.state, info.method, info.model, Path(info.dataset).name)).lower()
    return all(word in haystack for word in text.lower().split())


def _number(record: dict | None, key: str) -> float | None:
    value = (record or {}).get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def last_record(path: Path, kind: str, tail_bytes: int = TAIL_BYTES) -> dict | None:
    """The last complete record of ``kind`` in a JSONL file, read from its end only.

    A torn last line (no newline yet) is ignored; ``None`` when no such record is in the
    last ``tail_bytes`` bytes (or the file is missing).
    """
    for line in reversed(_tail_bytes(path, tail_bytes).split(b"\n")[:-1]):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn line, or the cut first line of the chunk
        if isinstance(record, dict) and record.get("kind") == kind:
            return record
    return None


def _tail_bytes(path: Path, count: int) -> bytes:
    """At most the last ``count`` bytes of a regular file (``/dev/zero`` or a FIFO reads as empty)."""
    return read_tail(path, count)


def log_tail(run_dir: Path, max_lines: int = 200, tail_bytes: int = 4 * TAIL_BYTES) -> str:
    """The end of the run's ``worker.log``; carriage-return progress bars keep their last state."""
    raw = _tail_bytes(Path(run_dir) / LOG_FILE, tail_bytes)
    lines = raw.decode("utf-8", errors="replace").rstrip("\n").split("\n")
    if len(raw) >= tail_bytes:
        lines = lines[1:]  # the first line is cut by the chunk's start
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines]
    return "\n".join(lines[-max_lines:])


def metric_series(records: list[dict], kind: str, key: str) -> list[tuple[float, float]]:
    """``(step, value)`` points of one metric from records of one ``kind``, finite values only."""
    points = []
    for record in records:
        if record.get("kind") != kind:
            continue
        value, step = record.get(key), record.get("step")
        if isinstance(value, (int, float)) and isinstance(step, (int, float)) and math.isfinite(value):
            points.append((float(step), float(value)))
    return points


def downsample(points: list[tuple[float, float]], count: int) -> list[tuple[float, float]]:
    """Reduce a series to at most ``count`` points that still span the whole history.

    The points are cut into ``count`` consecutive buckets of (nearly) equal size and each
    bucket becomes its mean step and mean value, so the first and the last step are always
    represented and nothing is truncated. Hand-written (a few lines) rather than pulling
    numpy into the dashboard process.
    """
    count = max(1, int(count))
    if len(points) <= count:
        return list(points)
    reduced = []
    for bucket in range(count):
        start = bucket * len(points) // count
        end = (bucket + 1) * len(points) // count
        chunk = points[start:end]
        reduced.append((sum(x for x, _ in chunk) / len(chunk), sum(y for _, y in chunk) / len(chunk)))
    return reduced


SMOOTHING = 0.8
"""The exponential moving average's weight on the past, as TensorBoard's smoothing slider (whose
default is 0.6): about a five-step window, which steadies a per-step loss without hiding a trend."""


class Series:
    """One metric's ``(step, value)`` points with running sums, so downsampling costs O(points shown).

    Each point's exponential moving average (:data:`SMOOTHING`, debiased as TensorBoard does so
    the first points are not pulled towards zero) is kept beside it, with its own sums, so a
    smoothed curve costs what the raw one does.

    Append-only: a reader in another thread may keep a reference and downsample it while the
    poll thread appends (it reads the length once); histories that must shrink build new
    ``Series`` objects instead of changing this one.
    """

    __slots__ = ("steps", "values", "smoothed", "_step_sums", "_value_sums", "_smoothed_sums", "_ema", "_decay")

    def __init__(self, points: list[tuple[float, float]] | None = None):
        self.steps: list[float] = []
        self.values: list[float] = []
        self.smoothed: list[float] = []
        self._step_sums = [0.0]
        self._value_sums = [0.0]
        self._smoothed_sums = [0.0]
        self._ema, self._decay = 0.0, 1.0  # the biased average and SMOOTHING ** points
        for step, value in points or ():
            self.append(step, value)

    def append(self, step: float, value: float) -> None:
        """Add a point (the sums last, so a reader that sees a sum sees its point)."""
        self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * value
        self._decay *= SMOOTHING
        smoothed = self._ema / (1 - self._decay)
        self.steps.append(step)
        self.values.append(value)
        self.smoothed.append(smoothed)
        self._step_sums.append(self._step_sums[-1] + step)
        self._smoothed_sums.append(self._smoothed_sums[-1] + smoothed)
        self._value_sums.append(self._value_sums[-1] + value)

    def __len__(self) -> int:
        return len(self._value_sums) - 1

    def points(self, smoothed: bool = False) -> list[tuple[float, float]]:
        """Every point, oldest first (their moving average when ``smoothed``)."""
        count = len(self)
        return list(zip(self.steps[:count], (self.smoothed if smoothed else self.values)[:count], strict=False))

    def downsample(self, count: int, smoothed: bool = False) -> list[tuple[float, float]]:
        """The same reduction as :func:`downsample` (bucket means over the whole history), from the sums."""
        total, count = len(self), max(1, int(count))
        if total <= count:
            return self.points(smoothed)
        sums = self._smoothed_sums if smoothed else self._value_sums
        reduced = []
        for bucket in range(count):
            start, end = bucket * total // count, (bucket + 1) * total // count
            size = end - start
            reduced.append(((self._step_sums[end] - self._step_sums[start]) / size, (sums[end] - sums[start]) / size))
        return reduced


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class RunHistory:
    """A run's metrics, read incrementally from ``metrics.jsonl`` and kept as one :class:`Series` a metric.

    Only the numbers are kept (not the records), so a long run costs a few floats a step.
    ``series`` maps ``(kind, key)``, e.g. ``("train", "loss")``, to its series.
    """

    def __init__(self, run_dir: Path):
        self.tail = MetricsTail(Path(run_dir) / METRICS_FILE)
        self.series: dict[tuple[str, str], Series] = {}

    def update(self) -> bool:
        """Read what the worker appended since the last call; True when something was added."""
        new = self.tail.read_new()
        for record in new:
            kind, step = record.get("kind"), record.get("step")
            if kind == "event" and record.get("event") in ("resumed", "started") and _numeric(step):
                # The rule of engine.runs.folder.merge_records, applied to the series: a resumed
                # worker logs again the steps after its checkpoint, so drop them first.
                self.series = {key: Series([p for p in s.points() if p[0] <= step]) for key, s in self.series.items()}
            elif kind in ("train", "eval") and _numeric(step):
                for key, value in record.items():
                    if key not in ("step", "epoch", "time") and _numeric(value):
                        self.series.setdefault((kind, key), Series()).append(float(step), float(value))
        return bool(new)


@dataclass
class WorkerUsage:
    """What a worker process uses now.

    Attributes:
        cpu_percent: CPU use since the previous sample (100 = one core busy).
        rss_bytes: Resident memory, the worker and its children together.
        gpu: GPU use when there is a GPU, else ``None``.
    """

    cpu_percent: float
    rss_bytes: int
    gpu: GpuUsage | None = None


@dataclass
class GpuUsage:
    """The run's GPUs: those where one of its processes holds memory.

    Attributes:
        utilization: The busiest of them, percent (``None`` when the driver does not say).
        used_bytes: Memory in use on them, by anyone.
        total_bytes: Their memory.
        process_bytes: What the run's own processes hold on them.
        indices: Their indices as ``nvidia-smi`` numbers them.
    """

    utilization: float | None
    used_bytes: int
    total_bytes: int
    process_bytes: int | None = None
    indices: tuple[int, ...] = ()


class WorkerMonitor:
    """Samples CPU and memory of worker processes with psutil, and their GPUs with ``nvidia-smi``.

    psutil measures CPU use between two calls on the same ``Process`` object, so the objects
    are kept here from one poll to the next. GPUs are only ever queried through the driver's
    tool: the dashboard never opens a CUDA context (hundreds of MB on a GPU a run may need).
    """

    def __init__(self):
        self._processes: dict[int, object] = {}
        self._nvidia_smi = shutil.which("nvidia-smi")

    def usage(self, pid: int | None) -> WorkerUsage | None:
        """The worker's usage, or ``None`` when ``pid`` is not running.

        Its children count too: the ranks of a group launcher or of torchrun.
        """
        import psutil

        if not pid:
            return None
        pids = {pid}
        try:
            process = self._processes.get(pid) or psutil.Process(pid)
            self._processes = {pid: process}  # one watched worker at a time: drop the others
            with process.oneshot():
                cpu = process.cpu_percent(None)
                rss = process.memory_info().rss
            for child in process.children(recursive=True):
                pids.add(child.pid)
                try:
                    rss += child.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            self._processes.pop(pid, None)
            return None
        return WorkerUsage(cpu, rss, self.gpu_usage(pids))

    def gpu_usage(self, pids: int | Iterable[int] | None = None) -> GpuUsage | None:
        """Usage of the GPUs where ``pids`` (a run's processes) hold memory, from ``nvidia-smi``.

        ``None`` when they hold none (a CPU run, or one still loading), or without ``nvidia-smi``
        (after it failed once it is not asked again: it would cost a process every second).
        """
        if not self._nvidia_smi:
            return None
        answers = _nvidia_smi_answers(self._nvidia_smi)
        if answers is None:
            self._nvidia_smi = None
            return None
        wanted = {pids} if isinstance(pids, int) else set(pids or ())
        return _run_gpu_usage(*answers, wanted)


MIB = 1024 * 1024


def _nvidia_smi_answers(command: str) -> tuple[list[list[str]], list[list[str]]] | None:
    """The GPUs (index, uuid, utilization, used and total MiB) and the compute processes (pid, GPU
    uuid, MiB) as ``nvidia-smi`` lists them; ``None`` when it fails or lists no GPU."""
    def query(*args: str) -> list[list[str]]:
        output = subprocess.run([command, *args, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                timeout=3, check=True).stdout
        return [[cell.strip() for cell in line.split(",")] for line in output.splitlines() if line.strip()]

    try:
        gpus = query("--query-gpu=index,uuid,utilization.gpu,memory.used,memory.total")
        apps = query("--query-compute-apps=pid,gpu_uuid,used_memory")
    except (OSError, subprocess.SubprocessError):
        return None
    return (gpus, apps) if gpus else None


def _run_gpu_usage(gpus: list[list[str]], apps: list[list[str]], pids: set[int]) -> GpuUsage | None:
    """The GPUs where one of ``pids`` holds memory; ``None`` when none does or the answers do not parse."""
    try:
        own_apps = [(a[1], int(float(a[2])) * MIB if _is_number(a[2]) else None)  # [N/A] under MIG
                    for a in apps if len(a) > 2 and a[0].isdigit() and int(a[0]) in pids]
        own = {a[0] for a in own_apps}
        held = [b for _, b in own_apps if b is not None]
        mine = [g for g in gpus if len(g) > 4 and g[1] in own]
        if not mine:
            return None
        utilizations = [float(g[2]) for g in mine if _is_number(g[2])]
        used = sum(int(float(g[3])) for g in mine) * MIB
        total = sum(int(float(g[4])) for g in mine) * MIB
        indices = tuple(int(g[0]) for g in mine if g[0].isdigit())
    except (ValueError, IndexError):
        return None
    return GpuUsage(max(utilizations) if utilizations else None, used, total, sum(held) if held else None, indices)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False  # "[N/A]" on GPUs that do not report it
    return True
