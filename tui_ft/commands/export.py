"""``tui-ft export NAME --merged OUT_DIR``: a run as one standalone model folder."""

from __future__ import annotations

ORDER = 32


def add_parser(commands) -> None:
    parser = commands.add_parser("export", help="write a run's model (LoRA merged) as a Hugging Face folder")
    parser.add_argument("name", metavar="NAME", help="the run")
    parser.add_argument("--merged", required=True, metavar="OUT_DIR", help="folder to create (must be new or empty)")
    parser.add_argument("--from-checkpoint", action="store_true", help="export the latest checkpoint, not the final weights")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the base model's own Python code (auto_map); run.json saying so is not enough")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from tui_ft.cli import UserError
    from tui_ft.engine.models import fetch_run_weights
    from tui_ft.engine.runs import RunError, read_run_config, run_dir_for
    from tui_ft.engine.training.export import export_merged

    try:
        run_dir = run_dir_for(args.home, args.name)
        # A Hub base model's missing weights first, with their own bar (not under the spinner).
        if not (run_dir / "model").is_dir() or args.from_checkpoint:
            fetch_run_weights(read_run_config(run_dir))
        with Console(stderr=True).status(f"exporting {args.name}"):
            out = export_merged(run_dir, Path(args.merged), from_checkpoint=args.from_checkpoint,
                                trust_remote_code=args.trust_remote_code)
    except RunError as error:
        raise UserError(str(error)) from None
    print(out)
    return 0
