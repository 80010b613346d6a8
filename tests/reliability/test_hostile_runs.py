"""Hostile run folders and workspaces: no planted module runs, no network listener, no trust from run.json,
no signal to a process that is not ours.

Every attack is live: planted modules and model code write a marker file when imported; the
processes that ``runs stop`` must spare are real ``sleep`` and Python processes; the group's
sockets are read from the kernel (psutil) while a real two-process run trains.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_security import EVIL_CODE

from tui_ft.cli import main
from tui_ft.engine.files import read_json, write_json_atomic
from tui_ft.engine.runs import read_status, stop_run

from polling import wait_for
from report import Section
from workers import new_run, one_thread  # noqa: F401

EVAL_MODULE = "tui_ft.engine.evaluation.worker"  # spelled out: these tests also run against code without processes.py
WORKER_MODULE = "tui_ft.engine.runs.worker"
SECTION = Section(
    "hostile-runs",
    "Hostile files: run folders and processes",
    [
        "Written by `tests/reliability/test_hostile_runs.py`. A run folder or workspace from someone else: planted",
        "modules and a model's own code are live payloads that write a marker file when imported (every row asserts",
        "no marker); the processes `runs stop` must spare are real; the group's sockets are read from the kernel",
        "(psutil) while a real two-process run trains.",
    ],
    ["case", "trials", "outcome"],
    ["run-folder-modules", "workspace-modules", "worker-log-link", "group-network", "trust-run-json", "stop-foreign-pid"],
)

PLANTED = {  # module file -> what it shadows
    "orjson.py": "orjson", "torch.py": "torch", "runpy.py": "runpy", "tui_ft/__init__.py": "tui_ft",
}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    SECTION.write_if_complete()


def plant_modules(folder: Path, marker: Path, names=PLANTED) -> list[str]:
    """Files in ``folder`` that shadow real modules and append their name to ``marker`` when imported."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"open({str(marker)!r}, 'a').write({name!r} + ' imported\\n')\n"
                        "raise ImportError('a planted module')\n")
    return list(names)


TRANSPARENT = """
import os, sys
open({marker!r}, "a").write({name!r} + " imported\\n")
here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
del sys.modules[__name__]
import {name}  # the real one, which the importer then gets: the process goes on as if nothing happened
"""


def plant_transparent(folder: Path, marker: Path, name: str) -> None:
    """``name.py`` in ``folder`` that appends to ``marker`` when imported, then hands over the real module."""
    (folder / f"{name}.py").write_text(TRANSPARENT.format(marker=str(marker), name=name))


def proof(marker: Path) -> str:
    return marker.read_text() if marker.exists() else ""


def wait_final(run_dir: Path) -> dict:
    return wait_for(lambda: (s := read_status(run_dir))["state"] in ("finished", "stopped", "failed", "died") and s,
                    "the run to end", timeout=300)


# ----- 1. modules planted where our processes start ------------------------------------------


def test_a_module_planted_in_the_run_folder_is_never_imported_by_the_worker(workspace, tiny_model_dir, tmp_path,
                                                                              capsys):
    run_dir = new_run(workspace, tiny_model_dir, name="shared", method="lora", max_steps=1)
    marker = tmp_path / "pwned"
    planted = plant_modules(run_dir, marker)
    assert main(["--home", str(workspace), "runs", "resume", "shared", "--detach"]) == 0, capsys.readouterr().err
    status = wait_final(run_dir)
    log = (run_dir / "worker.log").read_text()
    assert proof(marker) == "", proof(marker)  # the worker (python, cwd = run folder) imported none of them
    assert status["state"] == "finished", (status, log[-2000:])
    SECTION.add("run-folder-modules", f"`runs resume` of a run whose folder (the worker's current folder) holds "
                f"{', '.join(f'`{p}`' for p in planted)}", 1, "the worker trains to `finished`; none was imported")


def test_a_module_planted_in_the_workspace_is_never_imported_by_eval_jobs_export_or_the_tokenizer(
        workspace, tiny_model_dir, tmp_path, monkeypatch, one_thread, capsys):
    from tui_ft.engine.data.tokenizer_process import TokenizerProcess
    from tui_ft.engine.evaluation.jobs import read_job_status
    from tui_ft.engine.training.trainer import train_run
    from tui_ft.ui.screens.runs import export_merged_cli

    marker = tmp_path / "pwned"
    planted = plant_modules(workspace, marker, [*PLANTED, "multiprocessing/__init__.py"])
    monkeypatch.chdir(workspace)  # as a user starting `tui-ft` in the workspace (the default home)

    # `eval --detach`: the job runs with the workspace as its current folder.
    assert main(["--home", str(workspace), "eval", str(tiny_model_dir), "--perplexity", "seed_instructions.jsonl",
                 "--no-cache", "--detach", "--json"]) == 0
    job_dir = Path(json.loads(capsys.readouterr().out)["job"])
    job = wait_for(lambda: (s := read_job_status(job_dir))["state"] in ("finished", "failed", "died", "stopped") and s,
                   "the evaluation job", timeout=300)
    assert proof(marker) == "", proof(marker)
    assert job["state"] == "finished", (job, (job_dir / "worker.log").read_text()[-2000:])

    # The Runs pane's export: `tui-ft export` in a child process started from the dashboard's folder.
    run_dir = new_run(workspace, tiny_model_dir, name="tuned", method="lora", max_steps=1)
    assert train_run(run_dir) == "finished"
    assert export_merged_cli(workspace, "tuned", tmp_path / "merged") == ""
    assert proof(marker) == "" and (tmp_path / "merged" / "config.json").is_file()

    # The Datasets pane's tokenizer child (multiprocessing spawn: `python -c`, current folder first).
    if sys.version_info >= (3, 11):  # PYTHONSAFEPATH; Python 3.10's spawn child still puts '' first
        process = TokenizerProcess(tiny_model_dir)
        try:
            assert process.info().default_template in ("alpaca", "chat")
        finally:
            process._pool.shutdown()
    assert proof(marker) == "", proof(marker)
    SECTION.add("workspace-modules", f"a workspace holding {', '.join(f'`{p}`' for p in planted)}: `eval --detach` "
                "(its job runs there), the Runs pane's export child, the Datasets pane's tokenizer child", 3,
                "the job finishes, the export writes its folder, the tokenizer answers; none was imported")


def test_every_python_we_start_goes_through_the_bootstrap():
    """No `[sys.executable, "-m", ...]` outside processes.py: a new spawn site would import from its current folder."""
    import ast

    package = Path(__file__).resolve().parents[2] / "tui_ft"
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.List) and node.elts and ast.unparse(node.elts[0]) == "sys.executable":
                found.append(f"{path.relative_to(package)}:{node.lineno}")
    assert len(found) == 1 and found[0].startswith("engine/processes.py:"), found  # python_command's own list only


def test_a_worker_log_planted_as_a_link_is_refused(workspace, tiny_model_dir, tmp_path, capsys):
    run_dir = new_run(workspace, tiny_model_dir, name="shared", method="lora", max_steps=1)
    victim = tmp_path / "victim.sh"
    victim.write_text("echo hello\n")
    (run_dir / "worker.log").symlink_to(victim)
    before = read_json(run_dir / "status.json")
    assert main(["--home", str(workspace), "runs", "resume", "shared"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "worker.log is a symbolic link" in err and "Traceback" not in err, err
    assert victim.read_text() == "echo hello\n"
    assert read_json(run_dir / "status.json") == before  # refused before anything changed: no worker started
    SECTION.add("worker-log-link", "`runs resume` of a run whose `worker.log` is a link to a victim file", 1,
                "refused in one line (exit 2) before the status changes; the victim is untouched")


# ----- 2. the group's network ----------------------------------------------------------------


def inet_sockets(pid: int) -> list:
    """Every internet socket of ``pid`` and its descendants (TCP listening or connected, UDP)."""
    root = psutil.Process(pid)
    found = []
    for process in [root, *root.children(recursive=True)]:
        try:
            read = getattr(process, "net_connections", None) or process.connections  # psutil < 6: connections
            found += read(kind="inet")
        except psutil.NoSuchProcess:
            pass
    return found


def loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback  # ::ffff:127.0.0.1 too


def test_a_two_process_run_opens_no_socket_another_host_could_reach(workspace, tiny_model_dir, tmp_path,
                                                                    monkeypatch):
    from tui_ft.engine.runs import create_run, launch_run
    from tui_ft.engine.runs.config import TrainConfig

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_dir = create_run(TrainConfig(model=str(tiny_model_dir), name="pair", nproc=2, method="lora", batch_size=4,
                                     max_steps=40, eval_split=0.0, save_every=0, dataset="datasets/seed_instructions_20.jsonl"),
                         workspace)
    marker = tmp_path / "pwned"
    # The ranks start in the run folder too. A planted module that does its harm and then hands
    # over the real one: the run goes on, so the sockets are checked whichever code runs.
    plant_transparent(run_dir, marker, "orjson")
    pid = launch_run(run_dir)
    try:
        wait_for(lambda: read_status(run_dir)["step"] >= 1, "steps of the 2-process run", timeout=300)
        sockets = inet_sockets(pid)
        exposed = [(s.laddr, s.status) for s in sockets if s.laddr and not loopback(s.laddr.ip)]
        assert exposed == [], exposed  # torchrun --standalone listened on every interface here
        ranks = psutil.Process(pid).children()
        assert len(ranks) == 2 and sockets  # the group was read: two ranks, talking over loopback
        assert stop_run(run_dir) is True  # the launcher is this run's own process: it gets the signal
        assert wait_final(run_dir)["state"] == "stopped"
    finally:
        if psutil.pid_exists(pid):
            os.killpg(pid, signal.SIGKILL)
    assert proof(marker) == "", proof(marker)
    SECTION.add("group-network", "a 2-process run (`--nproc 2`, gloo) on this machine, its launcher's and ranks' "
                "sockets read while it trains; an `orjson.py` planted in its folder", 1,
                "every socket on loopback (torchrun's TCP store listened on every interface); `runs stop` reaches "
                "both ranks; no planted module imported")


# ----- 3. trust from run.json ----------------------------------------------------------------


def evil_model(folder: Path, source: Path, marker: Path) -> Path:
    """A copy of ``source`` whose config maps the Auto classes to its own module (a live payload)."""
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config |= {"model_type": "evil-llama", "architectures": ["EvilForCausalLM"],
               "auto_map": {"AutoConfig": "evil_code.EvilConfig", "AutoModelForCausalLM": "evil_code.EvilForCausalLM"}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil_code.py").write_text(EVIL_CODE.format(marker=str(marker)))
    return folder


def test_trust_and_the_model_folder_in_run_json_never_run_model_code(workspace, tiny_model_dir, tmp_path, capsys,
                                                                     one_thread):
    from tui_ft.engine.runs.worker import run_worker
    from tui_ft.engine.training.trainer import train_run

    run_dir = new_run(workspace, tiny_model_dir, name="shared", method="lora", max_steps=3)
    polls = []
    # Stopped after one step: a checkpoint and no final weights, so every path loads the base model.
    assert train_run(run_dir, lambda: polls.append(1) or len(polls) > 1) == "stopped"
    marker = tmp_path / "pwned"
    evil = evil_model(tmp_path / "colleague-model", tiny_model_dir, marker)
    config = json.loads((run_dir / "run.json").read_text())
    home = ["--home", str(workspace)]
    attempts = [["runs", "resume", "shared"], ["runs", "resume", "shared", "--detach"],
                ["export", "shared", "--merged", str(tmp_path / "out")],
                ["eval", "shared", "--checkpoint", "step-1", "--perplexity", "seed_instructions.jsonl", "--no-cache"],
                ["eval", "shared", "--checkpoint", "step-1", "--perplexity", "seed_instructions.jsonl", "--detach"]]
    trials = 0
    for trusted in ({"trust_remote_code": True}, {}):  # run.json trusting it, or only pointing at the folder
        write_json_atomic(run_dir / "run.json", config | {"model_path": str(evil)} | trusted)
        for argv in attempts:
            assert main([*home, *argv]) == 2, argv
            err = capsys.readouterr().err
            last = err.strip().splitlines()[-1]
            assert last.startswith("tui-ft: ") and "--trust-remote-code" in last and "auto_map" in last, (argv, err)
            assert "Traceback" not in err
            trials += 1
        assert read_status(run_dir)["state"] == "stopped" and not (tmp_path / "out").exists()
    assert run_worker(run_dir) == 1  # a worker started without the flag (torchrun by hand) refuses too
    status = read_status(run_dir)
    assert status["state"] == "failed" and "--trust-remote-code" in status["message"], status
    assert not marker.exists()
    trials += 1

    from tui_ft.engine.runs.lifecycle import check_model_code, worker_command

    check_model_code(run_dir, trust_remote_code=True)  # the user's own flag lifts the refusal, for this launch
    assert worker_command(run_dir, trust_remote_code=True)[-1] == "--trust-remote-code"
    assert "--trust-remote-code" not in worker_command(run_dir)
    SECTION.add("trust-run-json", "a run whose `run.json` says `trust_remote_code: true` (then only `model_path`) "
                "naming a model folder with an `auto_map` payload: `runs resume [--detach]`, `export`, `eval "
                "--checkpoint [--detach]`, and a worker started without the flag", trials,
                "each refused in one line naming `--trust-remote-code` (exit 2; the worker: `failed`); the "
                "code never ran; only the command's own `--trust-remote-code` lifts it")


# ----- 4. signals --------------------------------------------------------------------------------


def spawn(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, start_new_session=True)


def spared(process: subprocess.Popen) -> bool:
    """True when ``process`` is still running after a moment in which a signal sent to it would have landed."""
    try:
        process.wait(timeout=1.0)
        return False
    except subprocess.TimeoutExpired:
        return True


def claim(folder: Path, process: subprocess.Popen, offset: float = 0.0, state: str = "running") -> None:
    """Write a ``status.json`` naming ``process``, with its real start time (an attacker can read it) plus ``offset``."""
    started = psutil.Process(process.pid).create_time() + offset
    write_json_atomic(folder / "status.json", read_json(folder / "status.json") | {
        "state": state, "pid": process.pid, "pid_started": started, "updated": time.time()})


def test_stop_signals_only_the_runs_own_worker(workspace, tiny_model_dir, capsys):
    from tui_ft.engine.evaluation.jobs import jobs_dir, stop_eval_job

    run_dir = new_run(workspace, tiny_model_dir, name="shared", max_steps=1)
    job_dir = jobs_dir(workspace) / "20250101-000000-beef"
    job_dir.mkdir(parents=True)
    write_json_atomic(job_dir / "job.json", {"id": job_dir.name, "refs": ["default"], "home": str(workspace)})
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    processes = []
    try:
        victims = {
            "an unrelated `sleep`": spawn("sleep", "600"),
            "a process naming the run folder": spawn(*sleeper, str(run_dir)),
            "our worker's command line, another start time": spawn(*sleeper, WORKER_MODULE, str(run_dir)),
        }
        processes += victims.values()
        offsets = {"our worker's command line, another start time": -30.0}
        for what, process in victims.items():
            claim(run_dir, process, offsets.get(what, 0.0))
            code = main(["--home", str(workspace), "runs", "stop", "shared", "--wait"])
            out = capsys.readouterr().out
            assert spared(process), what
            if what in offsets:  # another start time: not the worker that wrote the status, so the run reads died
                assert code == 0 and out.strip() == "shared is already died", (what, out)
            else:
                assert code == 1 and out.count("\n") == 1 and "is not this run's worker" in out, (what, out)
            claim(job_dir, process, offsets.get(what, 0.0))
            stop_eval_job(job_dir)
            assert spared(process), f"{what} (eval job)"

        # The checks are not "never signal": a process that is the run's worker by both tests gets it.
        ours = spawn(*sleeper, WORKER_MODULE, str(run_dir))
        theirs = spawn(*sleeper, EVAL_MODULE, str(job_dir))
        processes += [ours, theirs]
        claim(run_dir, ours)
        assert stop_run(run_dir) is True and ours.wait(timeout=60) == -signal.SIGTERM
        claim(job_dir, theirs)
        stop_eval_job(job_dir)
        assert theirs.wait(timeout=60) == -signal.SIGTERM
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    SECTION.add("stop-foreign-pid", "`status.json` (a run's, an eval job's) naming, with its real start time, an "
                "unrelated `sleep`; a process whose command line names the run folder; one that looks like our "
                "worker but started at another time; `runs stop --wait`, `stop_eval_job`", len(victims) * 2 + 2,
                f"the {len(victims) * 2} foreign ones spared (`runs stop` says so in one line, exit 1, or reads the run "
                "`died`; `--wait` never hangs); a process that is the run's or the job's worker by command line and "
                "start time is signalled")
