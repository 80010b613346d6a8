"""Hostile files: a run folder, workspace or result someone else wrote (a shared server, a downloaded run).

Each case plants the file an attacker would (a real symbolic link to a victim file that must stay
untouched, a real FIFO, ``/dev/zero``, a huge sparse file, a malformed ``run.json``, an adapter
folder with only a pickle) and runs the engine's readers and writers or the CLI on it. Readers
that could block or exhaust memory run in a subprocess under a timeout and an address-space
limit, so a regression fails the test instead of hanging the suite or the machine.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tui_ft.cli import main
from tui_ft.engine import files
from tui_ft.engine.evaluation import store as eval_store
from tui_ft.engine.evaluation.jobs import read_job_status, stop_eval_job
from tui_ft.engine.evaluation.ratings import append_rating
from tui_ft.engine.files import UnsafeFileError, read_json, write_json_atomic
from tui_ft.engine.models import ModelError, list_models, load_model, resolve_model
from tui_ft.engine.runs import RunError, list_checkpoints, list_runs, read_status, resume_run, stop_run
from tui_ft.engine.runs import lifecycle as runs
from tui_ft.engine.runs.folder import MAX_METRICS_READ_BYTES, MetricsWriter
from tui_ft.engine.training.checkpoint import remove_staging, save_checkpoint
from tui_ft.views.bench_table import build_table, export_table, job_cells, read_jobs

from report import Section
from workers import one_thread  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
VICTIM_TEXT = "the victim's own file: nothing from tui-ft may ever be written here\n"
OLD = 1_000_000_000  # a victim's mtime, so that a touch through a link would show
MEMORY_LIMIT = 1 << 30  # address space of a reader subprocess: a read of /dev/zero fails fast
TIMEOUT_S = 120  # a reader that blocks on a FIFO fails here instead of hanging the suite

CASES = {
    "temp-links": "links planted at the temporary file names of `status.json`, a result file and the DPO reference cache",
    "stop-link": "`STOP` a link to a victim file, and to a missing file in a victim folder",
    "append-links": "`metrics.jsonl` and `ratings.jsonl` links to a victim file",
    "ckpt-link": "`ckpt/` a link to a victim folder of step-N folders; a `step-N` link inside a real `ckpt/`",
    "fifo": "`run.json`, `status.json`, `metrics.jsonl`, `worker.log`, `ratings.jsonl`, a result file: FIFOs",
    "dev-zero": "the same files as links to `/dev/zero`",
    "huge": "`run.json`, `status.json` and `metrics.jsonl` sparse files of 2 GiB",
    "nproc": "`run.json` nproc 1000000, -1, 0, \"4\", 2.5, true on resume",
    "model-loop": "`run.json` `\"model\"` the run's own name; two runs naming each other",
    "model-type": "`run.json` `\"model\": 5`, `[]`, `{}`; `run.json` a JSON list",
    "result-types": "a result with `created` a number beside results with text; one with `score` text, one without `model`",
    "eval-pid": "an evaluation job's status with pid -1, 0, \"x\", 2^40",
    "adapter-bin": "a run's `adapter/` with `adapter_model.bin` (a pickle) and no `adapter_model.safetensors`",
    "csv-formula": "model names and a dataset name starting with `=`, `+`, `-`, `@` in the CSV export",
}
SECTION = Section(
    "hostile-files",
    "Hostile files: links, sizes, malformed state",
    [
        "Written by `tests/reliability/test_hostile_files.py`. Files someone else may have written (a shared run",
        "folder, workspace or result): real symbolic links to a victim file or folder whose content and time are",
        "checked after, real FIFOs and `/dev/zero` read in a subprocess under a timeout and a 1 GiB address-space",
        "limit, malformed `run.json`, results and job files read by the lists and the CLI.",
    ],
    ["case", "trials", "outcome"],
    list(CASES),
)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    SECTION.write_if_complete()


_passed: dict[str, set] = {}


def add_when_all_passed(key: str, variant, variants: list, outcome: str) -> None:
    """Record a parametrized case's row once every variant of it has passed."""
    _passed.setdefault(key, set()).add(repr(variant))
    if _passed[key] == {repr(v) for v in variants}:
        SECTION.add(key, CASES[key], len(variants), outcome)


# ----- helpers -----------------------------------------------------------------------------------


def victim_file(tmp_path: Path, name: str = "victim.txt") -> Path:
    folder = tmp_path / "victim"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(VICTIM_TEXT)
    os.utime(path, (OLD, OLD))
    return path


def untouched(victim: Path) -> bool:
    info = victim.stat()
    return victim.read_text() == VICTIM_TEXT and info.st_mtime == OLD


def hand_run(home: Path, name: str, config: dict | None = None, state: str = "queued", **status) -> Path:
    """A run folder written by hand (as a colleague's or a downloaded one would be)."""
    run_dir = home / "checkpoints" / name
    run_dir.mkdir(parents=True)
    record = {"name": name, "method": "lora", "model": "default", "dataset": "/data/x.jsonl", "template": "chat",
              "created": time.time()}
    (run_dir / "run.json").write_text(json.dumps(record | (config or {})))
    (run_dir / "status.json").write_text(json.dumps({"state": state, "pid": None, "step": 0} | status))
    return run_dir


def with_adapter(run_dir: Path) -> Path:
    (run_dir / "adapter").mkdir()
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    return run_dir


def run_readers(home: Path) -> subprocess.CompletedProcess:
    """Every reader of run folders, results and ratings, and ``tui-ft runs``, in a subprocess with limits."""
    script = textwrap.dedent(f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
        from pathlib import Path
        from tui_ft.cli import main
        from tui_ft.engine.evaluation.store import load_results
        from tui_ft.engine.evaluation.ratings import read_ratings
        from tui_ft.engine.runs.folder import MetricsTail, read_metrics
        from tui_ft.views.run_monitor import RunHistory, last_record, log_tail, run_rows
        from tui_ft.engine.runs import list_runs, read_status
        home = Path(sys.argv[1])
        run_dir = home / "checkpoints" / "watched"
        seen = {{
            "runs": sorted(info.name for info in list_runs(home)),
            "rows": len(run_rows(home)),
            "status": read_status(run_dir)["state"],
            "metrics": len(read_metrics(run_dir)),
            "tail": len(MetricsTail(run_dir / "metrics.jsonl").read_new()),
            "last": last_record(run_dir / "metrics.jsonl", "train"),
            "log": len(log_tail(run_dir)),
            "history": RunHistory(run_dir).update(),
            "ratings": len(read_ratings(run_dir)),
            "results": len(load_results(home)),
        }}
        print("SEEN " + json.dumps(seen), file=sys.stderr)
        sys.exit(main(["--home", str(home), "runs"]))
    """)
    return subprocess.run([sys.executable, "-c", script, str(home)], capture_output=True, text=True,
                          timeout=TIMEOUT_S, cwd=REPO)


def seen(result: subprocess.CompletedProcess) -> dict:
    lines = [line for line in result.stderr.splitlines() if line.startswith("SEEN ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    return json.loads(lines[-1][5:])


def hostile_workspace(home: Path, plant) -> None:
    """A good run, a watched run whose every file is replaced by ``plant(path)``, and one result file."""
    hand_run(home, "good", state="stopped")
    watched = hand_run(home, "watched", state="stopped")
    hand_run(home, "broken")  # its run.json is planted too
    (home / "bench" / "default").mkdir(parents=True)
    for path in (watched / "status.json", watched / "metrics.jsonl", watched / "worker.log", watched / "ratings.jsonl",
                 home / "checkpoints" / "broken" / "run.json", home / "bench" / "default" / "benchmark-x-1.json"):
        path.unlink(missing_ok=True)
        plant(path)


# ----- 6: links followed for writes and deletes --------------------------------------------------


def test_temporary_files_are_created_exclusively(workspace, tmp_path, monkeypatch, capsys, one_thread):  # noqa: F811
    victim = victim_file(tmp_path)
    run_dir = hand_run(workspace, "shared")
    # The names the writers of this process used to pick (pid-based): planted links.
    pid = os.getpid()
    for name in (f".status.json.{pid}.tmp", f".run.json.{pid}.tmp"):
        (run_dir / name).symlink_to(victim)
    assert main(["--home", str(workspace), "runs", "stop", "shared"]) == 0
    assert read_status(run_dir)["state"] == "stopped" and untouched(victim)

    # Whatever the name, a temporary file is created exclusively: a link there is never written through.
    planted = run_dir / ".planted.tmp"
    planted.symlink_to(victim)
    monkeypatch.setattr(files, "_temporary_name", lambda path: planted)
    with pytest.raises(UnsafeFileError):
        files.write_json_atomic(run_dir / "status.json", {"state": "x"})
    assert untouched(victim) and read_status(run_dir)["state"] == "stopped"
    monkeypatch.undo()

    # The result store.
    folder = workspace / "bench" / "default"
    folder.mkdir(parents=True)
    result = folder / "benchmark-x-0123.json"
    (folder / f".{result.name}.tmp-{pid}").symlink_to(victim)
    write_json_atomic(result, {"kind": "benchmark"}, parents=True)
    assert read_json(result) == {"kind": "benchmark"} and untouched(victim)

    # The DPO reference cache (reference_logps.safetensors), written by the worker before step 1.
    import contextlib

    import torch

    from tui_ft.engine.training.dpo import REFERENCE_FILE, DPOObjective

    # No pairs: the reference is an empty (0, 2) tensor, written like any other.
    data = DPOObjective([], tokenizer=type("T", (), {"pad_token_id": 0})(), template="chat", max_length=64, beta=0.1)
    dpo_dir = tmp_path / "dpo-run"
    dpo_dir.mkdir()
    (dpo_dir / f".{REFERENCE_FILE}.{pid}.tmp").symlink_to(victim)
    data.prepare(torch.nn.Linear(1, 1), dpo_dir, "cpu", contextlib.nullcontext)
    assert (dpo_dir / REFERENCE_FILE).is_file() and not (dpo_dir / REFERENCE_FILE).is_symlink() and untouched(victim)
    SECTION.add("temp-links", CASES["temp-links"], 4,
                "`runs stop`, the result store and the DPO cache write through a new file created with "
                "O_CREAT/O_EXCL/O_NOFOLLOW under a random name; a link at the name is refused, never written "
                "through; the victim's content and time unchanged")


def test_stop_never_writes_through_a_link(workspace, tmp_path):
    victim = victim_file(tmp_path)
    first = hand_run(workspace, "first")
    (first / "STOP").symlink_to(victim)
    missing = victim.parent / "created-by-stop"
    second = hand_run(workspace, "second")
    (second / "STOP").symlink_to(missing)
    assert main(["--home", str(workspace), "runs", "stop", "first"]) == 0
    assert stop_run(second) is False  # queued, no worker: marked stopped
    for run_dir in (first, second):
        assert (run_dir / "STOP").is_file() and not (run_dir / "STOP").is_symlink()
        assert read_status(run_dir)["state"] == "stopped"
    assert untouched(victim) and not missing.exists()
    # Resume removes STOP: the link itself, never its target.
    third = hand_run(workspace, "third", state="stopped")
    (third / "STOP").symlink_to(victim)
    runs_started = []
    original = runs.launch_run
    runs.launch_run = lambda path: runs_started.append(path) or 4242
    try:
        assert resume_run(third) == 4242
    finally:
        runs.launch_run = original
    assert not os.path.lexists(third / "STOP") and untouched(victim)
    SECTION.add("stop-link", CASES["stop-link"], 3,
                "`runs stop` replaces the link by a file of its own (the link removed, not its target) and the run "
                "stops; resume removes the link itself; the victim's content and time unchanged, no file created")


def test_appends_refuse_a_link(workspace, tmp_path, capsys):
    victim = victim_file(tmp_path)
    run_dir = hand_run(workspace, "shared")
    (run_dir / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        MetricsWriter(run_dir / "metrics.jsonl")
    (run_dir / "ratings.jsonl").symlink_to(victim)
    record = {"prompt": "p", "reply": "r", "helpfulness": 5, "accuracy": 5, "clarity": 5}
    with pytest.raises(UnsafeFileError, match="symbolic link") as refused:
        append_rating(run_dir, record)
    assert "\n" not in str(refused.value)
    assert untouched(victim)
    SECTION.add("append-links", CASES["append-links"], 2,
                "opened with O_NOFOLLOW: refused with one line (`... is a symbolic link: tui-ft does not write "
                "through links`); the victim's content and time unchanged")


def test_a_linked_ckpt_folder_is_refused_and_nothing_is_deleted_through_it(tmp_path, one_thread):  # noqa: F811
    import torch

    victim = tmp_path / "victim-folder"
    for name in ("step-1", "step-2", "step-3", ".tmp-step-9-1"):
        (victim / name).mkdir(parents=True)
        (victim / name / "keep.txt").write_text(VICTIM_TEXT)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "ckpt").symlink_to(victim, target_is_directory=True)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(UnsafeFileError, match="symbolic link") as refused:
        save_checkpoint(run_dir, model, optimizer, scheduler, {"step": 4}, keep=1)
    assert "\n" not in str(refused.value)
    remove_staging(run_dir)  # the worker's clean-up after a failure
    assert sorted(p.name for p in victim.iterdir()) == [".tmp-step-9-1", "step-1", "step-2", "step-3"]
    assert all((victim / name / "keep.txt").read_text() == VICTIM_TEXT for name in ("step-1", ".tmp-step-9-1"))

    # A step-N link inside a real ckpt/ is not one of the run's checkpoints: never listed, never pruned through.
    other = tmp_path / "other"
    other.mkdir()
    (other / "ckpt").mkdir()
    (other / "ckpt" / "step-1").symlink_to(victim / "step-1", target_is_directory=True)
    assert list_checkpoints(other) == []
    for step in (2, 3):
        save_checkpoint(other, model, optimizer, scheduler, {"step": step}, keep=1)
    assert [p.name for p in list_checkpoints(other)] == ["step-3"]
    assert (victim / "step-1" / "keep.txt").read_text() == VICTIM_TEXT
    SECTION.add("ckpt-link", CASES["ckpt-link"], 2,
                "the checkpoint save refuses a linked `ckpt/` with one line; the clean-up and pruning delete "
                "nothing through it (the victim's 4 folders intact); a `step-N` link is not listed or pruned")


# ----- 7: files that hang or exhaust memory ------------------------------------------------------


def test_fifos_never_block_a_reader(workspace):
    hostile_workspace(workspace, lambda path: os.mkfifo(path))
    result = run_readers(workspace)  # a reader opening a FIFO blocks: the timeout fails the test
    found = seen(result)
    assert found["runs"] == ["good", "watched"] and found["rows"] == 2 and found["status"] == "queued"
    assert found["metrics"] == found["tail"] == found["log"] == found["ratings"] == found["results"] == 0
    assert "broken/run.json: skipped" in result.stderr
    # Writers too: a FIFO where a file is appended is refused, never waited on.
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        MetricsWriter(workspace / "checkpoints" / "watched" / "metrics.jsonl")
    SECTION.add("fifo", CASES["fifo"], 6,
                "run lists, status, metrics (whole, tail, last record, plot history), log tail, ratings, results "
                "and `tui-ft runs` return at once (regular files only: stat, then an O_NONBLOCK open and fstat); "
                "the FIFO run is skipped with one line naming its run.json; appending to a FIFO is refused")


def test_dev_zero_never_exhausts_memory(workspace):
    hostile_workspace(workspace, lambda path: path.symlink_to("/dev/zero"))
    result = run_readers(workspace)  # an unbounded read of /dev/zero fails at the 1 GiB limit
    found = seen(result)
    assert found["runs"] == ["good", "watched"] and found["metrics"] == found["log"] == found["ratings"] == 0
    assert "broken/run.json: skipped" in result.stderr
    SECTION.add("dev-zero", CASES["dev-zero"], 6,
                f"the same readers and `tui-ft runs` finish under a {MEMORY_LIMIT >> 30} GiB address-space limit: "
                "a character device is not read")


def test_huge_files_are_read_within_bounds(workspace):
    watched = hand_run(workspace, "watched", state="stopped")
    broken = hand_run(workspace, "broken")
    hand_run(workspace, "good", state="stopped")
    for path in (broken / "run.json", watched / "status.json", watched / "metrics.jsonl"):
        with open(path, "ab") as file:
            file.truncate(2 << 30)  # sparse: costs no disk
    result = run_readers(workspace)
    found = seen(result)
    assert found["runs"] == ["good", "watched"] and found["status"] == "queued" and found["metrics"] == 0
    assert "broken/run.json: skipped" in result.stderr
    SECTION.add("huge", CASES["huge"], 3,
                f"the readers finish under a {MEMORY_LIMIT >> 30} GiB address-space limit: run.json and status.json "
                f"at most {files.MAX_STATE_BYTES >> 20} MiB, a metrics read at most "
                f"{MAX_METRICS_READ_BYTES >> 20} MiB a call, tails 16-64 KiB; the run is skipped with one line")


NPROCS = [1_000_000, -1, 0, "4", 2.5, True]


@pytest.mark.parametrize("nproc", NPROCS)
def test_nproc_from_run_json_is_bounded_on_resume(workspace, monkeypatch, capsys, nproc):
    run_dir = hand_run(workspace, "shared", {"nproc": nproc}, state="stopped")
    started = []
    monkeypatch.setattr(runs, "launch_run", lambda path: started.append(path) or 4242)
    with pytest.raises(RunError, match="nproc"):
        resume_run(run_dir)
    assert main(["--home", str(workspace), "runs", "resume", "shared", "--detach"]) == 2
    error = capsys.readouterr().err.strip()
    assert "nproc" in error and len(error.splitlines()) == 1
    assert started == [] and read_status(run_dir)["state"] == "stopped"
    (run_dir / "run.json").write_text(json.dumps(read_json(run_dir / "run.json") | {"nproc": os.cpu_count()}))
    assert resume_run(run_dir) == 4242 and started  # within the machine: resumed
    add_when_all_passed("nproc", nproc, NPROCS,
                        "`runs resume` refuses with one line (a whole number from 1 to the machine's GPUs or CPU "
                        "cores); no worker started, the run stays `stopped`; a count within the machine resumes")


# ----- 8: one malformed file breaks a whole list -------------------------------------------------


def test_a_run_naming_itself_as_its_model_is_skipped(workspace, default_model_path, capsys):
    with_adapter(hand_run(workspace, "good", {"model": "default"}, state="finished"))
    with_adapter(hand_run(workspace, "loop", {"model": "loop"}, state="finished"))
    with_adapter(hand_run(workspace, "ping", {"model": "pong"}, state="finished"))
    with_adapter(hand_run(workspace, "pong", {"model": "ping"}, state="finished"))
    check_lists(workspace, capsys, ["good"], ["loop", "ping", "pong"])
    with pytest.raises(ModelError, match="loop"):
        resolve_model("loop", workspace, convert=False)
    SECTION.add("model-loop", CASES["model-loop"], 2,
                "`tui-ft models` (and the Chat and Train model lists, `list_models`) list the other runs and exit 0; "
                "each looping run is skipped with one line on stderr naming its run.json; resolving it is a one-line "
                "ModelError")


def test_a_run_whose_model_is_not_text_is_skipped(workspace, default_model_path, capsys):
    with_adapter(hand_run(workspace, "good", {"model": "default"}, state="finished"))
    for name, model in (("number", 5), ("list", []), ("mapping", {"a": 1})):
        with_adapter(hand_run(workspace, name, {"model": model}, state="finished"))
    with_adapter(hand_run(workspace, "array", state="finished"))
    (workspace / "checkpoints" / "array" / "run.json").write_text("[1, 2]")
    check_lists(workspace, capsys, ["good"], ["array", "list", "mapping", "number"])
    assert main(["--home", str(workspace), "runs", "--json"]) == 0  # the run list shows them all
    listed = {r["name"]: r["model"] for r in json.loads(capsys.readouterr().out)}
    assert listed == {"good": "default", "number": "?", "list": "?", "mapping": "?"}
    SECTION.add("model-type", CASES["model-type"], 4,
                "`tui-ft models` and `list_models` list the good run, exit 0, and skip each bad one with one line "
                "naming its run.json; `tui-ft runs` lists them with model `?`")


def check_lists(home: Path, capsys, good: list[str], bad: list[str]) -> None:
    capsys.readouterr()
    listed = [m["ref"] for m in list_models(home) if m["kind"] == "run"]
    assert listed == good
    assert main(["--home", str(home), "models", "--json"]) == 0
    captured = capsys.readouterr()
    assert [m["ref"] for m in json.loads(captured.out) if m["kind"] == "run"] == good
    # One line per bad run, once per process (list_models already named them above; the CLI in a
    # fresh process names them again, checked here in a subprocess).
    result = subprocess.run([sys.executable, "-m", "tui_ft", "--home", str(home), "models", "--json"],
                            capture_output=True, text=True, timeout=TIMEOUT_S, cwd=REPO)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if ": skipped (" in line]
    assert sorted(Path(line.split(": skipped")[0].removeprefix("tui-ft: ")).parent.name for line in warnings) == bad


def test_results_of_the_wrong_types_are_skipped(workspace, capsys):
    folder = workspace / "bench" / "default"
    good = {"kind": "benchmark", "model": "default", "checkpoint": None, "template": "chat", "scorer": "contains",
            "benchmark": "datasets/seed_benchmark.jsonl", "score": 0.5, "n": 2, "created": "2024-01-01T00:00:00+00:00"}
    write_json_atomic(folder / "benchmark-good-1.json", good, parents=True)
    write_json_atomic(folder / "benchmark-older-2.json", good | {"created": "2023-01-01T00:00:00+00:00"}, parents=True)
    write_json_atomic(folder / "benchmark-number-3.json", good | {"created": 1700000000.0}, parents=True)
    write_json_atomic(folder / "benchmark-text-4.json", good | {"score": "high"}, parents=True)
    write_json_atomic(folder / "benchmark-nomodel-5.json", {k: v for k, v in good.items() if k != "model"}, parents=True)
    capsys.readouterr()
    records = eval_store.load_results(workspace)
    assert [Path(r["file"]).name for r in records] == ["benchmark-older-2.json", "benchmark-good-1.json"]
    warnings = capsys.readouterr().err.splitlines()
    assert sorted(Path(line.split(": skipped")[0].removeprefix("tui-ft: ")).name for line in warnings) == [
        "benchmark-nomodel-5.json", "benchmark-number-3.json", "benchmark-text-4.json"]
    table = build_table(workspace, rows=[])
    assert {row.ref for row in table.rows} == {"default"} and table.cells
    SECTION.add("result-types", CASES["result-types"], 3,
                "`load_results` returns the good results, oldest first, and skips each bad file with one line naming "
                "it; the Benchmark table builds")


PIDS = [-1, 0, "x", 2**40]


@pytest.mark.parametrize("pid", PIDS)
def test_an_eval_job_pid_that_is_no_process(workspace, monkeypatch, pid):
    job_dir = workspace / "bench" / "jobs" / "20240101-000000-abcd"
    job_dir.mkdir(parents=True)
    (job_dir / "job.json").write_text(json.dumps({"id": job_dir.name, "refs": ["default"], "benchmarks": [],
                                                  "perplexity": []}))
    (job_dir / "status.json").write_text(json.dumps({"state": "running", "pid": pid, "done": 0, "total": 3}))
    signalled = []
    monkeypatch.setattr(os, "kill", lambda *args: signalled.append(args))
    status = read_job_status(job_dir)
    assert status["state"] == "died" and status["pid"] is None
    assert [s["state"] for s in read_jobs(workspace)] == ["died"] and job_cells(status, workspace) == []
    assert stop_eval_job(job_dir) is False and signalled == []
    add_when_all_passed("eval-pid", pid, PIDS,
                        "the job reads `died` (no process), the Benchmark pane's poll (`read_jobs`, `job_cells`) "
                        "returns, and stopping it signals nothing")


# ----- 9: adapters from pickles, formulas in CSV --------------------------------------------------


def test_an_adapter_without_safetensors_is_refused(workspace, tiny_model_dir, tmp_path, one_thread):  # noqa: F811
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tui_ft.engine.training.export import export_merged

    run_dir = hand_run(workspace, "pickled", {"model": str(tiny_model_dir), "model_path": str(tiny_model_dir)},
                       state="finished")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    peft_model.save_pretrained(run_dir / "adapter", safe_serialization=False)
    assert (run_dir / "adapter" / "adapter_model.bin").is_file()
    assert not (run_dir / "adapter" / "adapter_model.safetensors").exists()
    resolved = resolve_model("pickled", workspace)
    for attempt in (lambda: load_model(resolved), lambda: export_merged(run_dir, tmp_path / "out")):
        with pytest.raises(ModelError, match="adapter_model.safetensors") as refused:
            attempt()
        assert "\n" not in str(refused.value)
    assert not (tmp_path / "out").exists()
    SECTION.add("adapter-bin", CASES["adapter-bin"], 2,
                "chat/eval (`load_model`) and `export` refuse with one line before peft could unpickle "
                "`adapter_model.bin`; nothing exported")


def test_csv_export_neutralises_formulas(workspace, tmp_path):
    names = ["=HYPERLINK(\"http://x.invalid\",\"click\")", "+1+2", "-2+3", "@SUM(A1)", "plain"]
    records = [{"kind": "benchmark", "model": name, "model_id": f"ref:{name}", "checkpoint": None, "template": "chat",
                "benchmark": "datasets/seed_benchmark.jsonl", "score": 0.25, "n": 4, "created": "2024"}
               for name in names]
    records.append({"kind": "perplexity", "model": "plain", "model_id": "ref:plain", "checkpoint": None,
                    "template": "chat", "dataset": "datasets/=cmd.jsonl", "perplexity": 3.0, "tokens": 9,
                    "created": "2024"})
    table = build_table(workspace, results=records, rows=[])
    csv_path, _ = export_table(table, workspace, destination=tmp_path / "export.csv")
    with open(csv_path, newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")], cells
    assert "'=HYPERLINK(\"http://x.invalid\",\"click\")" in cells and "'=cmd ppl" in cells and "plain" in cells
    assert "25.0" in cells  # numbers stay numbers
    # The export never writes through a link planted at its destination.
    victim = victim_file(tmp_path)
    (tmp_path / "linked.csv").symlink_to(victim)
    with pytest.raises(UnsafeFileError):
        export_table(table, workspace, destination=tmp_path / "linked.csv")
    assert untouched(victim)
    SECTION.add("csv-formula", CASES["csv-formula"], 6,
                "every text cell starting with `=`, `+`, `-`, `@` (or a tab or CR) gets a leading `'` (OWASP); numbers "
                "unchanged; a link at the destination is refused, the victim untouched")


def test_one_warning_line_per_file(workspace, capsys):
    """The lists are polled every second: a bad file is named once per process, not at every poll."""
    with_adapter(hand_run(workspace, "loop", {"model": "loop"}, state="finished"))
    capsys.readouterr()
    for _ in range(3):
        list_models(workspace)
        list_runs(workspace)
    assert len(capsys.readouterr().err.splitlines()) == 1
