"""``tui-ft train``: create a run, start its detached worker, and follow it with a progress bar.

The worker always runs in its own session (the same process the dashboard starts), so a
foreground run is a run the CLI watches: Ctrl+C asks the worker to stop at the next step
boundary with a checkpoint; a second Ctrl+C leaves it running in the background.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tui_ft.engine.runs.config import METHODS
from tui_ft.engine.runs.state import RunState
from tui_ft.views.formatting import format_duration

ORDER = 30

# CLI flag -> TrainConfig field (flags DESIGN.md names; the rest go through --set).
FLAGS = {
    "model": "model", "dataset": "dataset", "method": "method", "epochs": "epochs", "max_steps": "max_steps",
    "lr": "lr", "batch_size": "batch_size", "max_length": "max_length", "lora_rank": "lora_rank",
    "lora_alpha": "lora_alpha", "freeze_layers": "freeze_layers", "eval_dataset": "eval_dataset",
    "template": "template", "save_every": "save_every", "seed": "seed", "nproc": "nproc", "name": "name",
    "device": "device", "grad_accum": "grad_accum",
}


def add_parser(commands) -> None:
    parser = commands.add_parser("train", help="fine-tune a model (prints the run folder)")
    parser.add_argument("--config", metavar="RECIPE",
                        help="a recipe (YAML: the settings, the names --set takes; a name in recipes/ works too); "
                             "flags given beside it win")
    parser.add_argument("--model",
                        help="default, a model folder, a cached model, a run, or a Hub id org/name[@revision] "
                             "(its weights are downloaded by the run's worker)")
    parser.add_argument("--dataset", help="training data (path, or a name in datasets/)")
    parser.add_argument("--method", choices=METHODS,
                        help="lora, qlora (a 4-bit base: pip install tui_ft[gpu]), full, freeze or dpo")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--max-steps", type=int, help="optimizer steps (wins over --epochs)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: per method)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    parser.add_argument("--max-length", type=int, help="tokens per example (longer ones are cut)")
    parser.add_argument("--lora-rank", type=int)
    parser.add_argument("--lora-alpha", type=float)
    parser.add_argument("--freeze-layers", type=int, help="freeze: how many first layers (default: half)")
    parser.add_argument("--eval-dataset", help="held-out data (default: a split of the training data)")
    parser.add_argument("--template", choices=("alpaca", "chat"), help="default: the model's chat template")
    parser.add_argument("--save-every", type=int, help="checkpoint every N steps (0: only on stop)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--nproc", type=int,
                        help="processes under torchrun, one per GPU (gloo on CPU); default 1 (the dashboard's Train "
                             "pane starts at all visible GPUs); --batch-size stays the global batch and must divide "
                             "by it; --set fsdp=true shards full fine-tuning")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--name", help="run name (default: method-dataset-time)")
    parser.add_argument("--detach", action="store_true", help="start the run in the background and return")
    parser.add_argument("--create-only", action="store_true",
                        help="create the run folder without starting it (start it yourself, e.g. with torchrun "
                             "across servers: see README)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="any other setting, e.g. lora_targets=q_proj,v_proj or train_on_prompt=true")
    parser.add_argument("--plan", action="store_true",
                        help="print the memory plan (peak memory per device against its free memory) and exit; "
                             "creates nothing. A run that will not fit is refused unless --set ignore_memory_plan=true")
    parser.add_argument("--json", action="store_true", help="with --plan: the plan as JSON (peak_bytes: the predicted peak)")
    parser.set_defaults(handler=run)


def config_values(args) -> dict:
    """The config fields the user gave, flags first, then ``--set`` pairs."""
    from tui_ft.cli import UserError

    values = {field: getattr(args, flag) for flag, field in FLAGS.items() if getattr(args, flag, None) is not None}
    for pair in args.settings:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r}: expected KEY=VALUE")
        values[key.strip().replace("-", "_")] = value
    return values


def run(args) -> int:
    from tui_ft.cli import UserError
    from tui_ft.engine.data import load_dataset
    from tui_ft.engine.runs import MemoryPlanError, RunError, create_run, launch_run
    from tui_ft.engine.runs.config import ConfigError, TrainConfig
    from tui_ft.engine.runs.config_checks import find_dataset

    if args.json and not args.plan:
        raise UserError("--json goes with --plan (a run's progress is in its metrics.jsonl)")
    values = given = config_values(args)
    recipe = None
    if args.config:
        from tui_ft.engine.runs.recipe import find_recipe, read_recipe

        recipe = read_recipe(find_recipe(args.config, args.home))  # a RecipeError: its path:line problems, exit 1
        values = recipe.values | values
    missing = [f"--{name}" for name in ("model", "dataset", "method") if not values.get(name)]
    if missing:
        raise UserError(f"{', '.join(missing)} needed (a flag, or a recipe's setting with --config)")
    # Dataset problems are printed as PATH:LINE lines (exit 1) by cli.main, before anything else.
    for key in ("dataset", "eval_dataset"):
        if values.get(key):
            load_dataset(find_dataset(values[key], args.home))
    try:
        config = TrainConfig.from_dict(values)
        if args.plan:
            return show_plan(config, args)
        # A run created for torchrun on other servers is planned there, not against this machine.
        run_dir = create_run(config, args.home, check_plan=not args.create_only)
    except ConfigError as error:
        if recipe is not None:
            from tui_ft.engine.runs.recipe import RecipeError

            raise RecipeError(recipe.problems_of(error, set(given))) from None  # each at its recipe line
        raise UserError(str(error)) from None
    except MemoryPlanError as error:
        raise UserError(str(error)) from None
    print(run_dir, flush=True)
    if args.create_only:
        from tui_ft.engine.runs.folder import update_status

        # Otherwise it reads "queued · waiting for the worker" with no hint of what starts it.
        update_status(run_dir, message=f"created, not started: tui-ft runs resume {run_dir.name} (or r in the Runs pane) "
                                       "starts it here; torchrun starts it across servers (README)")
        trust = " --trust-remote-code" if config.trust_remote_code else ""
        print(f"not started; on each server: torchrun --nnodes N --node-rank K --nproc-per-node G "
              f"--master-addr HOST0 --master-port 29500 -m tui_ft.engine.worker {run_dir}{trust}", file=sys.stderr)
        return 0
    try:
        # Trust comes from this command's own settings (--set trust_remote_code=true), never from run.json.
        launch_run(run_dir, trust_remote_code=True) if config.trust_remote_code else launch_run(run_dir)
    except RunError as error:
        raise UserError(str(error)) from None
    return 0 if args.detach else follow(run_dir)


def show_plan(config, args) -> int:
    """Print the run's memory plan (a table, or JSON with ``--json``); nothing is created.

    Raises:
        ConfigError: The config has problems (the same ones ``train`` would refuse).
    """
    import orjson

    from tui_ft.engine.data.templates import default_template
    from tui_ft.engine.models import load_tokenizer, resolve_model
    from tui_ft.engine.runs import validate_config
    from tui_ft.engine.runs.config import ConfigError
    from tui_ft.engine.runs.config_checks import find_dataset
    from tui_ft.engine.runs.memory_plan import cheapest_fix, longest_example_tokens, plan_memory

    errors = validate_config(config, args.home)
    if errors:
        raise ConfigError(errors)
    model = resolve_model(config.model, args.home, weights=False)  # config.json, the tokenizer: no weights
    tokenizer = load_tokenizer(model.path)
    longest = longest_example_tokens(find_dataset(config.dataset, args.home), tokenizer,
                                     config.template or default_template(tokenizer))
    plan = plan_memory(config, model.path, longest=longest)
    fix = (None if plan.fits or plan.capacity_bytes is None
           else cheapest_fix(config, model.path, plan.capacity_bytes, longest))
    if args.json:
        extra = {"model": config.model, "method": config.resolved().method, "longest_example_tokens": longest,
                 "fix": fix[0] if fix else None, "fix_peak_bytes": fix[1].peak_bytes if fix else None}
        print(orjson.dumps(plan.to_dict() | extra, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(plan.table())
    if fix:
        print(f"cheapest fix: {fix[0]} ({fix[1].summary()})")
    elif not plan.fits:
        print("no setting makes it fit: use a smaller model or a device with more memory")
    return 0


def follow(run_dir: Path, offset: int = 0) -> int:
    """Show a run's progress until it ends; returns 0 for finished or stopped, 1 otherwise.

    Args:
        run_dir: The run folder.
        offset: Where to start reading ``metrics.jsonl`` (its size before a resume: the
            earlier history was seen already).
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tui_ft.commands.download_bar import byte_count_column
    from tui_ft.engine.runs import MetricsTail, metrics_path, read_status, stop_run
    from tui_ft.engine.runs.folder import LOG_FILE
    from tui_ft.engine.runs.state import FINAL_STATES
    from tui_ft.safe_text import clean, plain

    console = Console(stderr=True)
    tail = MetricsTail(metrics_path(run_dir))
    tail.offset = offset
    stopping = False
    # The run's files may come from someone else: their text is shown plain (no escapes, no markup).
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), byte_count_column(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("starting", total=None, info="", eta="?")
        download: list = []  # the bar of the worker's download of the model's weights, once one is seen
        while True:
            try:
                info = _show_records(progress, tail.read_new())
                status = read_status(run_dir)
                _show_download(progress, download, status.get("download"))
                eta = status.get("eta_s")
                changes = {"info": info} if info else {}
                progress.update(task, description=clean(status["state"]), total=status.get("total_steps"),
                                completed=status.get("step", 0), eta=format_duration(eta) if eta is not None else "?",
                                **changes)
                if status["state"] in FINAL_STATES:
                    break
                time.sleep(0.3)
            except KeyboardInterrupt:
                if stopping:
                    console.print(f"left running in the background: tui-ft runs stop {run_dir.name}")
                    return 130
                stopping = True
                stop_run(run_dir)
                console.print("stopping at the next step with a checkpoint (Ctrl+C again to leave it running)")
    _show_records(progress, tail.read_new())
    console.print(plain(f"{run_dir.name}: {status['state']}: {status.get('message', '')}"))
    if status["state"] == RunState.DIED:
        log = (run_dir / LOG_FILE).read_text(errors="replace").splitlines()[-8:]
        console.print(plain("\n".join(log)))
    return 0 if status["state"] in (RunState.FINISHED, RunState.STOPPED) else 1


def _show_download(progress, download: list, report) -> None:
    """Draw the worker's download (``status.json``'s ``download``) as a bar of its own, bytes and speed."""
    from rich.filesize import decimal

    from tui_ft.safe_text import clean

    if not isinstance(report, dict) or not isinstance(report.get("done"), int):
        if download:  # over: the bar stays, full
            task = progress.tasks[download[0]]
            progress.update(download[0], completed=task.total or task.completed, info="", eta="0s")
        return
    total = report.get("total") if isinstance(report.get("total"), int) else None
    if not download:
        download.append(progress.add_task(clean(str(report.get("what") or "downloading")), total=total, info="",
                                          eta="?", bytes=True))
    progress.update(download[0], completed=report["done"], total=total)
    task = progress.tasks[download[0]]
    left = task.time_remaining
    progress.update(download[0], info=f"{decimal(int(task.speed))}/s" if task.speed else "",
                    eta=format_duration(left) if left is not None else "?")


def _show_records(progress, records: list[dict]) -> str:
    """Print events and evaluations above the bar; return the latest training line."""
    from tui_ft.safe_text import plain

    info = ""
    for record in records:
        if record.get("kind") == "train":
            info = f"loss {record.get('loss', 0):.4f}  lr {record.get('lr', 0):.2e}  {record.get('tokens_per_s', 0):.0f} tok/s"
            if "rewards_accuracy" in record:
                info += f"  acc {record['rewards_accuracy']:.2f}"
        elif record.get("kind") == "eval":
            extra = f"  ppl {record['ppl']:.2f}" if record.get("ppl") is not None else ""
            progress.console.print(f"step {record['step']}: eval loss {record.get('loss', 0):.4f}{extra}")
        elif record.get("kind") == "event" and record.get("event") != "checkpoint":
            progress.console.print(plain(f"step {record.get('step', 0)}: {record.get('message', record.get('event'))}"))
    return info
