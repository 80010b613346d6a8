"""``tui-ft data check|show|pairs-from-ratings``: validate dataset files, show what training will see, make pairs from ratings."""

from __future__ import annotations

import sys

ORDER = 10


def add_parser(commands) -> None:
    parser = commands.add_parser("data", help="check and inspect dataset files")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate files; one PATH:LINE: message per problem")
    check.add_argument("paths", nargs="+", metavar="PATH")
    check.set_defaults(handler=run_check)
    show = sub.add_parser("show", help="format, token statistics and the first examples rendered")
    show.add_argument("path", metavar="PATH")
    show.add_argument("--model", default="default", help="model whose tokenizer counts tokens (default: default)")
    show.add_argument("--template", choices=("alpaca", "chat"), help="prompt template (default: the model's chat template)")
    show.add_argument("--max-length", type=int, default=512)
    show.add_argument("--examples", type=int, default=3, help="how many examples to render")
    show.add_argument("--train-on-prompt", action="store_true", help="show the loss on every token")
    show.set_defaults(handler=run_show)
    pairs = sub.add_parser("pairs-from-ratings",
                           help="preference pairs from Chat ratings of a run's replies and its base model's")
    pairs.add_argument("model", metavar="RUN", help="a run (its ratings and its base model's), or any model reference")
    pairs.add_argument("--out", metavar="FILE", help="a .jsonl file to create (default: standard output)")
    pairs.set_defaults(handler=run_pairs)


def run_check(args) -> int:
    from tui_ft.engine.data import check_dataset
    from tui_ft.engine.data.readers import DatasetError
    from tui_ft.engine.runs.config_checks import find_dataset
    from tui_ft.safe_text import clean

    failed = False
    for path in args.paths:
        try:  # as train and eval find it: as given, in the workspace, in its datasets/
            problems = check_dataset(find_dataset(path, args.home))
        except DatasetError as error:  # no such file: the folders searched
            problems = error.problems
        for problem in problems:
            print(clean(problem))  # names and lines from the file: no terminal escapes (tui_ft/safe_text.py)
        failed |= bool(problems)
        if not problems:
            print(f"{clean(path)}: ok", file=sys.stderr)
    return 1 if failed else 0


def run_show(args) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tui_ft.cli import UserError
    from tui_ft.engine.data import load_dataset, preference_examples, sft_examples
    from tui_ft.engine.data.stats import dataset_stats
    from tui_ft.engine.data.templates import default_template, mask_segments, tokenize_example
    from tui_ft.engine.models import load_tokenizer, resolve_model
    from tui_ft.safe_text import clean, plain

    if args.max_length < 1:
        raise UserError(f"--max-length must be at least 1, got {args.max_length}")
    from tui_ft.engine.runs.config_checks import find_dataset

    dataset = load_dataset(find_dataset(args.path, args.home))
    tokenizer = load_tokenizer(resolve_model(args.model, args.home, weights=False).path)  # a Hub model: no weights
    template = args.template or default_template(tokenizer)
    stats = dataset_stats(dataset, tokenizer, template, args.max_length)
    console = Console()
    console.print(plain(args.path, style="bold") + f": {dataset.format}, {stats.examples} examples, template {template}")
    console.print(
        f"tokens per example: min {stats.min_tokens}, median {stats.median_tokens:g}, max {stats.max_tokens}; "
        f"{stats.over_max_length} over max length {stats.max_length}"
    )
    table = Table("tokens", "examples", "", box=None)
    peak = max((c for _, _, c in stats.histogram), default=1) or 1
    for low, high, count in stats.histogram:
        table.add_row(f"{low}–{high}", str(count), "█" * round(30 * count / peak))
    console.print(table)
    if dataset.format == "preference":
        examples = [e for pair in dataset.records[: args.examples] for e in preference_examples(pair)]
    else:
        examples = sft_examples(dataset)[: args.examples]
    for example in examples:
        tokenized = tokenize_example(example, tokenizer, template, args.max_length, args.train_on_prompt)
        console.rule(f"line {example.line}: {len(tokenized.input_ids)} tokens, {tokenized.trained_tokens} trained")
        text = Text()
        for segment, trained in mask_segments(tokenized, tokenizer):
            text.append(clean(segment), style="bold green" if trained else "dim")  # the file's text: no escapes
        console.print(text)
    console.print("[dim]dim: prompt (no loss)[/]  [bold green]green: trained tokens[/]")
    return 0


def run_pairs(args) -> int:
    """Write the preference pairs the ratings of ``args.model`` (and its base model's) make."""
    import orjson

    from tui_ft.cli import UserError
    from tui_ft.engine.evaluation.ratings import preference_pairs, ratings_path, read_ratings
    from tui_ft.engine.runs.folder import read_run_config
    from tui_ft.engine.workspace import find_run_dir

    refs = [args.model]
    run_dir = find_run_dir(args.model, args.home)
    base = read_run_config(run_dir).get("model") if run_dir else None
    if isinstance(base, str) and base:
        refs.append(base)  # the Chat pane's compare (ctrl+b) files the base model's replies under it
    records = [record for ref in refs for record in read_ratings(ratings_path(ref, args.home))]
    pairs = preference_pairs(records)
    if not pairs:
        raise UserError(f"{args.model}: no pairs in {len(records)} ratings: rate two different replies to the same "
                        "prompt (in Chat, ctrl+b compares base and tuned, ctrl+r rates each)")
    text = b"".join(orjson.dumps(pair) + b"\n" for pair in pairs)
    if args.out:
        try:
            with open(args.out, "xb") as out:  # never over an existing file
                out.write(text)
        except FileExistsError:
            raise UserError(f"{args.out}: already exists") from None
        except OSError as error:
            raise UserError(f"{args.out}: cannot be written ({error.strerror or error})") from None
    else:
        sys.stdout.buffer.write(text)
    prompts = len({pair["prompt"] for pair in pairs})
    plural = lambda count, word: f"{count} {word}{'' if count == 1 else 's'}"  # noqa: E731
    print(f"{plural(len(pairs), 'pair')} from {plural(len(records), 'rating')} of {plural(prompts, 'prompt')}"
          + (f" to {args.out}" if args.out else ""), file=sys.stderr)
    return 0
