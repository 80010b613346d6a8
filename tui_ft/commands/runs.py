"""``tui-ft runs``: list runs; ``runs stop NAME``; ``runs resume NAME [--detach]``."""

from __future__ import annotations

import time

import orjson

from tui_ft.views.formatting import format_age

ORDER = 31


def add_parser(commands) -> None:
    parser = commands.add_parser("runs", help="list, stop and resume training runs")
    parser.add_argument("--json", action="store_true", help="machine-readable list")
    parser.set_defaults(handler=run_list)
    sub = parser.add_subparsers(dest="runs_command", metavar="ACTION")
    stop = sub.add_parser("stop", help="stop a run at its next step, with a checkpoint")
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--wait", action="store_true", help="wait until the run has stopped")
    stop.set_defaults(handler=run_stop)
    resume = sub.add_parser("resume", help="continue a stopped or dead run from its latest checkpoint")
    resume.add_argument("name", metavar="NAME")
    resume.add_argument("--detach", action="store_true", help="resume in the background and return")
    resume.add_argument("--trust-remote-code", action="store_true",
                        help="run the base model's own Python code (auto_map); run.json saying so is not enough")
    resume.set_defaults(handler=run_resume)


def run_list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from tui_ft.engine.runs import list_runs
    from tui_ft.safe_text import plain

    runs = list_runs(args.home)
    if args.json:
        rows = [{"name": r.name, "state": r.state, "step": r.step, "total_steps": r.total_steps, "method": r.method,
                 "model": r.model, "dataset": r.dataset} for r in runs]
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not runs:
        print(f"no runs in {args.home / 'checkpoints'}")
        return 0
    table = Table("name", "state", "step", "method", "model", "dataset", "updated", "message", box=None)
    now = time.time()
    for r in runs:
        progress = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        ago = format_age(now - r.updated) if r.updated else ""
        dataset = str(r.dataset).rsplit("/", 1)[-1]
        # Every cell comes from files someone else may have written: plain text, no escapes, no markup.
        table.add_row(*(plain(cell) for cell in (r.name, r.state, progress, r.method, r.model, dataset, ago, r.message)))
    Console().print(table)
    return 0


def _run_dir(args):
    from tui_ft.cli import UserError
    from tui_ft.engine.runs import RunError, run_dir_for

    try:
        return run_dir_for(args.home, args.name)
    except RunError as error:
        raise UserError(str(error)) from None


def run_stop(args) -> int:
    from tui_ft.engine.runs import FINAL_STATES, read_status, stop_run
    from tui_ft.safe_text import clean

    run_dir = _run_dir(args)
    state = read_status(run_dir)["state"]
    if state in FINAL_STATES:
        print(f"{args.name} is already {state}")
        return 0
    if not stop_run(run_dir) and (status := read_status(run_dir))["state"] not in FINAL_STATES:
        # The pid in status.json is not this run's worker (another process, or none we can tell):
        # nothing was signalled, and waiting for it would never end.
        print(f"{args.name}: pid {status.get('pid')!r} in status.json is not this run's worker; "
              "nothing was signalled (a STOP file asks the run's worker to stop at its next step)")
        return 1
    if args.wait:
        while read_status(run_dir)["state"] not in FINAL_STATES:
            time.sleep(0.3)
    print(f"{args.name}: {clean(read_status(run_dir)['state'])}")
    return 0


def run_resume(args) -> int:
    from tui_ft.cli import UserError
    from tui_ft.commands.train import follow
    from tui_ft.engine.runs import RunError, metrics_path, resume_run

    run_dir = _run_dir(args)
    history = metrics_path(run_dir)
    offset = history.stat().st_size if history.is_file() else 0
    try:
        resume_run(run_dir, trust_remote_code=args.trust_remote_code)
    except RunError as error:
        raise UserError(str(error)) from None
    print(run_dir, flush=True)
    return 0 if args.detach else follow(run_dir, offset)
