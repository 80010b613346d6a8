"""``tui-ft eval REF... --benchmark PATH | --perplexity PATH | --reward RUN --prompts PATH``: score models, keep the results.

Results are stored (see :mod:`tui_ft.engine.evaluation.store`) and served from disk the next time
unless ``--no-cache``; ``--detach`` starts a background job and returns at once.
"""

from __future__ import annotations

import sys

import orjson

from tui_ft.commands.devices import use_device

ORDER = 60


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "eval", help="benchmark scores and perplexity of models and runs",
        description="Score models on benchmarks (contains / exact / choice), measure perplexity on a dataset, "
                    "or have a reward model judge their replies to a prompt sheet (mean reward).",
    )
    parser.add_argument("refs", nargs="+", metavar="REF",
                        help="model: default, a model folder, a cached model, a run name or a Hub id org/name[@revision]")
    parser.add_argument("--benchmark", action="append", default=[], metavar="PATH", help="a benchmark file (repeatable)")
    parser.add_argument("--perplexity", action="append", default=[], metavar="PATH", help="a dataset whose replies are scored (repeatable)")
    parser.add_argument("--reward", metavar="REWARD_RUN",
                        help="a finished --method reward run that judges the models' greedy replies to --prompts")
    parser.add_argument("--prompts", action="append", default=[], metavar="PATH",
                        help="prompts for --reward to judge the replies to: a prompts file, or any dataset's questions "
                             "(repeatable)")
    parser.add_argument("--template", choices=("alpaca", "chat"), help="prompt template (default: the run's, else the model's own)")
    parser.add_argument(
        "--scorer", choices=("contains", "exact", "choice"), help="default: choice when every item has choices, else contains"
    )
    parser.add_argument("--max-new-tokens", type=int, default=None, metavar="N", help="reply length limit for benchmarks (default 64)")
    parser.add_argument("--max-length", type=int, default=None, metavar="N", help="truncate perplexity examples to N tokens")
    parser.add_argument("--checkpoint", metavar="step-N", help="an intermediate checkpoint of a run instead of its final weights")
    parser.add_argument("--device", metavar="DEV", help="auto, cpu, cuda, cuda:N or mps "
                        "(default: $TUI_FT_DEVICE, else auto: keep chat and evaluation off a training GPU)")
    parser.add_argument("--no-cache", action="store_true", help="compute again even when a stored result matches")
    parser.add_argument("--detach", action="store_true", help="run as a background job; print its folder and return")
    parser.add_argument("--items", action="store_true", help="also list every benchmark item with its reply")
    parser.add_argument("--json", action="store_true", help='machine-readable output: {"results": [...]}')
    parser.set_defaults(handler=run)


def run(args) -> int:
    use_device(args.device)
    from tui_ft.cli import UserError

    if bool(args.reward) != bool(args.prompts):
        raise UserError("--reward RUN and --prompts PATH go together: a reward model judges the replies to prompts")
    if not args.benchmark and not args.perplexity and not args.prompts:
        raise UserError("nothing to evaluate: give --benchmark PATH, --perplexity PATH or --reward RUN --prompts PATH")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.max_length is not None and args.max_length < 2:
        raise UserError(f"--max-length must be at least 2, got {args.max_length}")
    if args.detach:
        return _run_detached(args)
    from transformers.utils import logging as hf_logging

    from tui_ft.engine.evaluation import default_settings, evaluate_many

    hf_logging.disable_progress_bar()  # our progress bar replaces the weight-loading bars
    settings = default_settings(args.max_new_tokens) if args.max_new_tokens else None
    with _progress_bar() as update:
        try:
            results = evaluate_many(
                args.refs, args.home, args.benchmark, args.perplexity, args.checkpoint, args.template, settings,
                args.scorer, args.max_length, use_cache=not args.no_cache, progress=update,
                reward_prompts=args.prompts, reward=args.reward,
            )
        except ValueError as error:
            raise UserError(str(error)) from None
    if args.json:
        print(orjson.dumps({"results": results}, option=orjson.OPT_INDENT_2).decode())
    else:
        _print_table(results, args.items)
    return 0


def _run_detached(args) -> int:
    from tui_ft.cli import UserError
    from tui_ft.engine.evaluation import start_eval_job

    try:
        job_dir = start_eval_job(args.home, args.refs, args.benchmark, args.perplexity, args.checkpoint,
                                 template=args.template, scorer=args.scorer, max_new_tokens=args.max_new_tokens,
                                 use_cache=not args.no_cache, reward_prompts=args.prompts, reward=args.reward)
    except ValueError as error:
        raise UserError(str(error)) from None
    print(orjson.dumps({"job": str(job_dir)}).decode() if args.json else job_dir)
    print(f"started; progress in {job_dir / 'status.json'}, log in {job_dir / 'worker.log'}", file=sys.stderr)
    return 0


class _progress_bar:
    """A transient progress bar on stderr; yields the ``(done, total)`` callback."""

    def __enter__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        from tui_ft.commands.download_bar import download_display
        from tui_ft.engine.models import showing_downloads

        console = Console(stderr=True)
        # No bar where stderr is not a terminal (a log, a pipe): there a transient bar only
        # leaves a blank line, before a refusal too.
        self.progress = Progress("evaluating", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=console, transient=True, disable=not console.is_terminal)
        self.task = self.progress.add_task("eval", total=None)
        # A Hub model fetched meanwhile shows its own bar: this one steps aside until it is done.
        self.downloads = showing_downloads(download_display(pause=self.progress))
        self.downloads.__enter__()

        def update(done: int, total: int | None) -> None:
            # Started at the first progress, once the files were read: a bar started earlier left
            # a blank line before a refusal on a non-terminal stderr.
            self.progress.start()
            self.progress.update(self.task, completed=done, total=total)

        return update

    def __exit__(self, *exc):
        self.downloads.__exit__(*exc)
        if self.progress.live.is_started:  # rich's stop prints a newline on a non-terminal, started or not
            self.progress.stop()
        return False


def _print_table(results: list[dict], show_items: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from tui_ft.safe_text import plain

    console = Console()
    table = Table("model", "benchmark or dataset", "scorer", "score/ppl", "n/tokens", "")
    for column in table.columns[:3]:
        column.overflow = "fold"  # a path cut to "datasets/see…" (or a reward model to "reward:rewa…") names nothing
    for record in results:
        model = record["model"] + (f" @ {record['checkpoint']}" if record.get("checkpoint") else "")
        stored = "stored" if record.get("cached") else f"{record.get('seconds', 0):.1f} s"
        # Names and items come from result and dataset files: plain text (no escapes, no markup).
        if record["kind"] == "benchmark":
            table.add_row(plain(model), plain(record["benchmark"]), plain(record["scorer"]), f"{record['score']:.3f}",
                          str(record["n"]), stored)
        elif record["kind"] == "reward":
            table.add_row(plain(model), plain(record["prompts"]), plain(f"reward:{record['reward_model_name']}"),
                          f"{record['reward']:+.3f}", str(record["n"]), stored)
        else:
            table.add_row(plain(model), plain(record["dataset"]), "perplexity", f"{record['perplexity']:.3f}",
                          str(record["tokens"]), stored)
    console.print(table)
    for record in results if show_items else []:
        if record["kind"] == "reward":
            items = Table("reward", "prompt", "reply",
                          title=plain(f"{record['model']} · {record['prompts']} · {record['reward_model_name']}"))
            for item in record["items"]:
                items.add_row(f"{item['reward']:+.3f}", plain(item["prompt"]), plain(item["reply"]))
            console.print(items)
            continue
        if record["kind"] != "benchmark":
            continue
        items = Table("", "prompt", "expected", "reply", title=plain(f"{record['model']} · {record['benchmark']}"))
        for item in record["items"]:
            items.add_row("[green]✓[/]" if item["correct"] else "[red]✗[/]", plain(item["prompt"]), plain(item["expected"]),
                          plain(item["reply"]))
        console.print(items)
