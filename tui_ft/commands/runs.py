"""``tui-ft runs [--filter TEXT]``: list runs; ``runs stop NAME``; ``runs resume NAME [--detach]``;
``runs delete NAME [--yes]``; ``runs rename NAME NEW``; ``runs diff NAME NAME…``; ``runs show NAME [--recipe]``;
``runs export NAME --csv [OUT]``."""

from __future__ import annotations

import time

import orjson

from tui_ft.views.formatting import format_age

ORDER = 31


def add_parser(commands) -> None:
    parser = commands.add_parser("runs", help="list, stop, resume and delete training runs")
    parser.add_argument("--json", action="store_true", help="machine-readable list")
    parser.add_argument("--filter", metavar="TEXT", default="",
                        help="only runs whose name, state, method, model or dataset contain TEXT (words: all of them)")
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
    delete = sub.add_parser("delete", help="delete a run and its checkpoints (a live run is stopped first)")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--yes", action="store_true", help="do not ask (needed where there is no terminal to ask on)")
    delete.set_defaults(handler=run_delete)
    rename = sub.add_parser("rename", help="rename a stopped or finished run (its results move with it)")
    rename.add_argument("name", metavar="NAME")
    rename.add_argument("new_name", metavar="NEW")
    rename.set_defaults(handler=run_rename)
    show = sub.add_parser("show", help="a run's state and settings; --recipe: as a recipe that trains it again")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--recipe", action="store_true",
                      help="print the run's settings as a YAML recipe (tui-ft train --config FILE trains the same run)")
    show.set_defaults(handler=run_show)
    export = sub.add_parser("export", help="a run's metrics as CSV, for plotting elsewhere")
    export.add_argument("name", metavar="NAME")
    export.add_argument("--csv", required=True, metavar="OUT", nargs="?", const="-",
                        help="file to write (default: standard output)")
    export.set_defaults(handler=run_export)
    diff = sub.add_parser("diff", help="the settings two or more runs differ in")
    diff.add_argument("names", metavar="NAME", nargs="+")
    diff.set_defaults(handler=run_diff)


def run_list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from tui_ft.engine.runs import list_runs
    from tui_ft.safe_text import clean, plain
    from tui_ft.views.run_monitor import run_matches

    runs = [run for run in list_runs(args.home) if run_matches(run, args.filter)]
    if args.json:
        rows = [{"name": r.name, "state": r.state, "step": r.step, "total_steps": r.total_steps, "method": r.method,
                 "model": r.model, "dataset": r.dataset} for r in runs]
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not runs:
        matching = f" matching {clean(args.filter.strip())!r}" if args.filter.strip() else ""
        print(f"no runs{matching} in {args.home / 'checkpoints'}")
        return 0
    now = time.time()
    rows = []
    for r in runs:
        progress = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        ago = format_age(now - r.updated) if r.updated else ""
        dataset = str(r.dataset).rsplit("/", 1)[-1]
        # Every cell comes from files someone else may have written: plain text, no escapes, no markup.
        rows.append([plain(cell) for cell in (r.name, r.state, progress, r.method, r.model, dataset, ago, r.message)])
    # Each run one line: the name, state, step, method and age whole, the model, dataset and
    # message cut to what the terminal leaves (wrapped, "finished after 10 steps" took three lines).
    table = Table(box=None, expand=True)
    for index, column in enumerate(("name", "state", "step", "method", "model", "dataset", "updated", "message")):
        whole = column in ("name", "state", "step", "method", "updated")
        widest = max([len(column)] + [row[index].cell_len for row in rows])
        table.add_column(column, no_wrap=True, overflow="ellipsis", min_width=widest if whole else min(widest, 8),
                         ratio=1 if column == "message" else None)
    for row in rows:
        table.add_row(*row)
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


def run_delete(args) -> int:
    import sys

    from tui_ft.cli import UserError
    from tui_ft.engine.runs import LIVE_STATES, RunError, delete_run, read_status
    from tui_ft.safe_text import clean

    run_dir = _run_dir(args)
    state = read_status(run_dir)["state"]
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"deleting {args.name} needs --yes (there is no terminal to ask on)")
        stopping = " (it is live: it is stopped first)" if state in LIVE_STATES else ""
        answer = input(f"Delete run {clean(args.name)} and its checkpoints{stopping}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    try:
        delete_run(run_dir)
    except RunError as error:
        raise UserError(str(error)) from None
    print(f"deleted {run_dir}")
    return 0


def run_rename(args) -> int:
    from tui_ft.cli import UserError
    from tui_ft.engine.evaluation.run_rename import rename_run
    from tui_ft.engine.runs import RunError

    run_dir = _run_dir(args)
    try:
        target = rename_run(run_dir, args.new_name, args.home)
    except RunError as error:
        raise UserError(str(error)) from None
    print(f"renamed {run_dir} to {target.name}")
    return 0


def run_diff(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from tui_ft.cli import UserError
    from tui_ft.engine.runs import read_run_config
    from tui_ft.safe_text import plain
    from tui_ft.views.run_diff import config_diff

    if len(args.names) < 2:
        raise UserError("runs diff needs two runs or more")
    configs = []
    for name in args.names:
        args.name = name
        configs.append(read_run_config(_run_dir(args)))
    rows = config_diff(configs, args.home)
    if not rows:
        print("same settings")
        return 0
    table = Table(box=None)
    for header in ("setting", *args.names):
        table.add_column(plain(header))
    for key, values in rows:
        table.add_row(plain(key), *(plain(value) for value in values))
    Console().print(table)
    return 0


def run_show(args) -> int:
    from tui_ft.engine.models import pinned_model
    from tui_ft.engine.runs import read_run_config, read_status
    from tui_ft.engine.runs.recipe import recipe_text, recipe_values
    from tui_ft.safe_text import clean

    run_dir = _run_dir(args)
    config = read_run_config(run_dir)
    # The commit the run trained from: a Hub model's branch may have moved since.
    config = config | {"model": pinned_model(config.get("model"), config.get("model_revision"))}
    for key in ("dataset", "eval_dataset"):  # a Hub dataset as its reference, not the cache file read
        source = config.get(f"{key}_source")
        if isinstance(source, str) and source:
            config[key] = source
    if args.recipe:
        print(recipe_text(config, f"tui-ft recipe of run {run_dir.name}: tui-ft train --config FILE trains it again"),
              end="")
        return 0
    status = read_status(run_dir)
    step = f"{status.get('step', 0)}/{status['total_steps']}" if status.get("total_steps") else str(status.get("step", 0))
    print(clean(f"{run_dir.name}: {status.get('state')} at step {step}" + (f" · {status['message']}"
                                                                         if status.get("message") else "")))
    values = recipe_values(config)
    width = max(map(len, values), default=0)
    for key, value in values.items():
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        print(clean(f"  {key:<{width}}  {shown}"))
    return 0


def run_export(args) -> int:
    import contextlib
    import csv
    import sys

    from tui_ft.cli import UserError
    from tui_ft.engine.runs import read_metrics

    run_dir = _run_dir(args)
    records = read_metrics(run_dir)
    columns = ["kind", "step", "epoch", "time"]
    for record in records:  # every key any record has, in the order they first appear
        columns += [key for key in record if key not in columns and not isinstance(record[key], (dict, list))]
    try:
        # Never over an existing file; standard output is left open.
        handle = contextlib.nullcontext(sys.stdout) if args.csv == "-" else open(args.csv, "x", newline="")
    except FileExistsError:
        raise UserError(f"{args.csv}: already exists") from None
    except OSError as error:
        raise UserError(f"{args.csv}: cannot be written ({error.strerror or error})") from None
    with handle as out:
        writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    if args.csv != "-":
        print(f"{len(records)} records to {args.csv}", file=sys.stderr)
    return 0
